"""``[env] inherit`` and ``[env] pass``: what they parse to, how they are stored, and the
exact error a wrong value gets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clusterd.errors import SpecError
from clusterd.spec import parse_sweep
from clusterd.spec.model import EnvConfig, SweepSpec

HEAD = 'name = "x"\ncommand = "python t.py"\n'


def env_of(body: str) -> EnvConfig:
    return parse_sweep(HEAD + body, source="sweep.toml").env


def test_defaults_inherit_the_submitting_shell_and_pass_nothing_more() -> None:
    env = env_of("")
    assert env.inherit == "submit" and env.pass_vars == ()
    assert env_of('[env]\nvars = { A = "1" }\n').inherit == "submit"


def test_inherit_daemon_and_pass_are_read_in_order_without_repeats() -> None:
    env = env_of(
        '[env]\ninherit = "daemon"\npass = ["WANDB_PROJECT", "HF_HOME", "WANDB_PROJECT"]\n'
    )
    assert env.inherit == "daemon"
    assert env.pass_vars == ("WANDB_PROJECT", "HF_HOME")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[env]\ninherit = "venv"\n',
            'sweep.toml: env.inherit: expected "submit" or "daemon", got string "venv"',
        ),
        (
            "[env]\ninherit = true\n",
            'sweep.toml: env.inherit: expected "submit" or "daemon", got boolean true',
        ),
        (
            '[env]\npass = "WANDB_PROJECT"\n',
            'sweep.toml: env.pass: expected a list of variable names like ["WANDB_PROJECT"], '
            'got string "WANDB_PROJECT"',
        ),
        (
            '[env]\npass = ["WANDB_PROJECT", "1ABC"]\n',
            'sweep.toml: env.pass[1]: expected a variable name like "WANDB_PROJECT", '
            'got string "1ABC"',
        ),
        (
            '[env]\npass = ["A=B"]\n',
            'sweep.toml: env.pass[0]: expected a variable name like "WANDB_PROJECT", '
            'got string "A=B"',
        ),
        (
            "[env]\npass = [3]\n",
            'sweep.toml: env.pass[0]: expected a variable name like "WANDB_PROJECT", got integer 3',
        ),
        ("[env]\npasss = []\n", "sweep.toml: env.passs: unknown key, did you mean 'pass'?"),
    ],
    ids=[
        "inherit-word",
        "inherit-bool",
        "pass-string",
        "pass-bad-name",
        "pass-equals",
        "pass-int",
        "typo",
    ],
)
def test_bad_values_name_the_key_and_what_was_expected(body: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_sweep(HEAD + body, source="sweep.toml")
    assert err.value.message == message


def test_stored_and_restored_alike_and_older_records_get_the_defaults() -> None:
    spec = parse_sweep(HEAD + '[env]\ninherit = "daemon"\npass = ["A", "B"]\n')
    again = SweepSpec.from_dict(spec.to_dict())
    assert again.env == spec.env and again.env.pass_vars == ("A", "B")
    old = spec.to_dict()
    old["env"] = {"vars": {"A": "1"}, "setup": None}  # a sweep stored before these keys
    restored = SweepSpec.from_dict(old).env
    assert restored.inherit == "submit" and restored.pass_vars == () and restored.vars == {"A": "1"}


NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)


@given(st.lists(NAMES, max_size=8), st.sampled_from(["submit", "daemon"]))
def test_any_list_of_names_parses_to_those_names_once_each(names: list[str], inherit: str) -> None:
    listed = ", ".join(f'"{n}"' for n in names)
    env = env_of(f'[env]\ninherit = "{inherit}"\npass = [{listed}]\n')
    assert env.pass_vars == tuple(dict.fromkeys(names))
    assert env.inherit == inherit
