"""Policies: every bad file is refused with an error naming the file, the key and what is
allowed; every decision names the rule that made it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corolla.core import ConfigError, PermissionDeniedError
from corolla.trust import LinkPolicy, NodePolicy, SigningKey, summarize_error

BUNDLE = "1a2b3c4d5e6f" + "0" * 52
OTHER = "9" * 64


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(textwrap.dedent(text))
    return path


# reading


def test_a_link_policy_is_read_with_its_rules(tmp_path: Path) -> None:
    # Arrange
    key = SigningKey.create(tmp_path / "k.pem")
    path = _write(
        tmp_path,
        f"""
        [nodes]
        required-attributes = {{region = "eu", gpu = true, cores = 8}}
        [apps]
        allowed-bundles = ["{BUNDLE.upper()}"]
        trusted-signers = ["{key.public_text}"]
        """,
    )

    # Act
    policy = LinkPolicy.load(path)

    # Assert: values read as a node's attributes read (strings, booleans lower case)
    assert policy.required_attributes == {"region": "eu", "gpu": "true", "cores": "8"}
    assert policy.apps.allowed_bundles == {BUNDLE}
    assert policy.apps.trusted_signers == {key.public_text}


def test_a_node_policy_is_read_with_its_rules(tmp_path: Path) -> None:
    # Arrange
    path = _write(
        tmp_path,
        """
        [runs]
        max-rounds = 3
        max-run-seconds = 90
        [errors]
        details = "summary"
        """,
    )

    # Act
    policy = NodePolicy.load(path)

    # Assert
    assert (policy.max_rounds, policy.max_run_seconds, policy.details) == (3, 90.0, "summary")
    assert not policy.apps.allowed_bundles and not policy.apps.trusted_signers


def test_an_empty_policy_allows_everything(tmp_path: Path) -> None:
    # Arrange
    path = _write(tmp_path, "")

    # Act
    link, node = LinkPolicy.load(path), NodePolicy.load(path)

    # Assert
    assert link.check_node({}).allowed and link.check_app(BUNDLE).allowed
    assert node.check_app(BUNDLE).allowed and node.check_run(1, 10**6, 1e9).allowed
    assert node.details == "full"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[apps\n", "not valid TOML"),
        ("[app]\n", "unknown table [app]; a policy here has [nodes], [apps]"),
        ("nodes = 1\n", "must be a table [nodes]"),
        ("[apps]\nallowed-bundle = []\n", "unknown key 'allowed-bundle' in [apps]; it takes"),
        ('[apps]\nallowed-bundles = "abc"\n', "[apps] allowed-bundles must be a list of strings"),
        ('[apps]\nallowed-bundles = ["abc"]\n', "allowed-bundles[0] = 'abc' is not a SHA-256"),
        ('[apps]\ntrusted-signers = ["ssh-ed25519 AAAA"]\n', "trusted-signers[0]: a node key"),
        ("[apps]\ntrusted-signers = [1]\n", "trusted-signers must be a list of strings"),
        ('[nodes]\nrequired-attributes = "eu"\n', "required-attributes must be a table"),
        ("[nodes]\nrequired-attributes = {a = [1]}\n", "required-attributes.a must be a string"),
        ("[runs]\n", "unknown table [runs]"),
    ],
)
def test_a_bad_link_policy_is_refused_naming_the_file_and_key(
    tmp_path: Path, text: str, says: str
) -> None:
    # Arrange
    path = _write(tmp_path, text)

    # Act / Assert
    with pytest.raises(ConfigError) as error:
        LinkPolicy.load(path)
    assert says in str(error.value)
    assert f"link policy {path}" in str(error.value)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[nodes]\n", "unknown table [nodes]; a policy here has [apps], [runs], [errors]"),
        ("[runs]\nmax-round = 3\n", "unknown key 'max-round' in [runs]; it takes max-rounds"),
        ("[runs]\nmax-rounds = 0\n", "max-rounds must be a whole number of at least 1, got 0"),
        ("[runs]\nmax-rounds = 2.5\n", "max-rounds must be a whole number"),
        ("[runs]\nmax-rounds = true\n", "max-rounds must be a whole number"),
        ("[runs]\nmax-run-seconds = -1\n", "max-run-seconds must be a number of seconds above 0"),
        ("[runs]\nmax-run-seconds = nan\n", "max-run-seconds must be a number of seconds"),
        ('[runs]\nmax-run-seconds = "1h"\n', "max-run-seconds must be a number of seconds"),
        ('[errors]\ndetails = "none"\n', '[errors] details is "full" or "summary", got \'none\''),
        ("[errors]\ntraceback = false\n", "unknown key 'traceback' in [errors]; it takes details"),
    ],
)
def test_a_bad_node_policy_is_refused_naming_the_file_and_key(
    tmp_path: Path, text: str, says: str
) -> None:
    # Arrange
    path = _write(tmp_path, text)

    # Act / Assert
    with pytest.raises(ConfigError) as error:
        NodePolicy.load(path)
    assert says in str(error.value)
    assert f"node policy {path}" in str(error.value)


def test_a_missing_or_unreadable_policy_file_is_refused(tmp_path: Path) -> None:
    # Arrange
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe")

    # Act / Assert
    with pytest.raises(ConfigError, match=r"missing\.toml: no such file"):
        NodePolicy.load(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="cannot be read"):
        LinkPolicy.load(tmp_path / "binary.toml")
    with pytest.raises(ConfigError, match="cannot be read"):
        LinkPolicy.load(tmp_path)


# decisions


def test_a_bundle_on_the_allow_list_is_admitted_and_another_refused(tmp_path: Path) -> None:
    # Arrange
    path = _write(tmp_path, f'[apps]\nallowed-bundles = ["{BUNDLE}"]\n')
    policy = NodePolicy.load(path)

    # Act
    admitted = policy.check_app(BUNDLE)
    refused = policy.check_app(OTHER)

    # Assert
    assert admitted.allowed and "[apps] allowed-bundles" in admitted.rule
    assert not refused.allowed
    assert str(refused) == (
        f"node policy ({path}, [apps] allowed-bundles): bundle {OTHER} is not on the allow-list"
    )
    with pytest.raises(PermissionDeniedError, match="not on the allow-list"):
        refused.enforce()


def test_a_bundle_signed_by_a_trusted_key_is_admitted(tmp_path: Path) -> None:
    # Arrange
    key = SigningKey.create(tmp_path / "k.pem")
    policy = LinkPolicy.load(_write(tmp_path, f'[apps]\ntrusted-signers = ["{key.public_text}"]'))

    # Act
    decision = policy.check_app(OTHER, [key.sign_bundle(OTHER)])

    # Assert
    assert decision.allowed
    assert "[apps] trusted-signers" in decision.rule and key.public_text in decision.reason


def test_a_signature_by_an_untrusted_key_over_another_bundle_or_altered_is_refused(
    tmp_path: Path,
) -> None:
    # Arrange
    trusted = SigningKey.create(tmp_path / "trusted.pem")
    stranger = SigningKey.create(tmp_path / "stranger.pem")
    policy = NodePolicy.load(
        _write(tmp_path, f'[apps]\ntrusted-signers = ["{trusted.public_text}"]')
    )
    good = trusted.sign_bundle(BUNDLE)
    altered = type(good)(good.public_key, good.signature[:-1] + bytes([good.signature[-1] ^ 1]))

    # Act
    by_stranger = policy.check_app(BUNDLE, [stranger.sign_bundle(BUNDLE)])
    over_another = policy.check_app(OTHER, [good])
    tampered = policy.check_app(BUNDLE, [altered])
    unsigned = policy.check_app(BUNDLE)

    # Assert: each refused, naming the rule and why
    for decision in (by_stranger, over_another, tampered, unsigned):
        assert not decision.allowed
        assert "[apps] trusted-signers" in decision.rule
        assert "carries no valid signature by a trusted signer" in decision.reason
    assert f"{stranger.public_text} is not a trusted signer" in by_stranger.reason
    assert f"the signature by {trusted.public_text} does not verify" in over_another.reason
    assert "does not verify" in tampered.reason


def test_with_both_lists_either_admits(tmp_path: Path) -> None:
    # Arrange
    key = SigningKey.create(tmp_path / "k.pem")
    policy = LinkPolicy.load(
        _write(
            tmp_path,
            f'[apps]\nallowed-bundles = ["{BUNDLE}"]\ntrusted-signers = ["{key.public_text}"]',
        )
    )

    # Act / Assert
    assert policy.check_app(BUNDLE).allowed
    assert policy.check_app(OTHER, [key.sign_bundle(OTHER)]).allowed
    refused = policy.check_app(OTHER)
    assert "[apps] allowed-bundles and trusted-signers" in refused.rule
    assert "is not on the allow-list and carries no valid signature" in refused.reason


def test_a_node_must_advertise_the_required_attributes(tmp_path: Path) -> None:
    # Arrange
    path = _write(tmp_path, '[nodes]\nrequired-attributes = {region = "eu", gpu = true}\n')
    policy = LinkPolicy.load(path)

    # Act
    joins = policy.check_node({"region": "eu", "gpu": "true", "extra": "x"})
    missing = policy.check_node({"region": "eu"})
    differs = policy.check_node({"region": "us", "gpu": "true"})

    # Assert
    assert joins.allowed
    assert not missing.allowed and not differs.allowed
    assert str(missing).startswith(f"link policy ({path}, [nodes] required-attributes): ")
    assert "does not advertise 'gpu'" in missing.reason and "--attributes gpu=true" in str(missing)
    assert "advertises region='us'; this federation admits only region='eu'" in differs.reason


def test_a_run_beyond_its_rounds_or_seconds_is_refused(tmp_path: Path) -> None:
    # Arrange
    path = _write(tmp_path, "[runs]\nmax-rounds = 2\nmax-run-seconds = 60\n")
    policy = NodePolicy.load(path)

    # Act / Assert
    assert policy.check_run(7, 2, 59.0).allowed
    rounds = policy.check_run(7, 3, 1.0)
    assert not rounds.allowed and "[runs] max-rounds" in rounds.rule
    assert "run 7 asked for a round beyond the 2 this node answers of a run" in rounds.reason
    seconds = policy.check_run(7, 1, 61.0)
    assert not seconds.allowed and "[runs] max-run-seconds" in seconds.rule


def test_a_summary_keeps_one_line_without_paths_or_traceback() -> None:
    # Arrange
    reason = (
        "node 3: ClientApp raised FileNotFoundError: [Errno 2] No such file: "
        "'/srv/hospital/patients.csv'\nTraceback (most recent call last):\n"
        '  File "/home/owner/app/client_app.py", line 12, in train\n'
    )

    # Act
    summary = summarize_error(reason)

    # Assert
    assert summary.startswith("node 3: ClientApp raised FileNotFoundError: ")
    assert "/srv" not in summary and "patients.csv" not in summary
    assert "Traceback" not in summary and "\n" not in summary
    assert "withheld" in summary
    assert "C:" not in summarize_error("failed on C:\\Users\\owner\\data.csv")
    assert len(summarize_error("x" * 10_000)) < 300
    plain = "node 3: the message expired before its ClientApp ran"
    assert summarize_error(plain) == plain
    full = NodePolicy()
    assert full.error_reason(reason) == reason
    assert NodePolicy(details="summary").error_reason(reason) == summary


def test_the_example_policies_read() -> None:
    # Arrange
    examples = Path(__file__).resolve().parents[2] / "examples" / "policies"

    # Act
    link = LinkPolicy.load(examples / "link-policy.toml")
    node = NodePolicy.load(examples / "node-policy.toml")

    # Assert
    assert link.required_attributes == {"region": "eu"}
    assert (node.max_rounds, node.details) == (50, "summary")


@given(st.text(max_size=2000))
def test_a_summary_is_always_one_short_line(reason: str) -> None:
    # Act
    summary = summarize_error(reason)

    # Assert
    assert len(summary.splitlines()) <= 1
    assert len(summary) <= 200 + len(" (details withheld by the node's policy)")
