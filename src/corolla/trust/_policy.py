"""Policy, on both sides: which nodes may join a link and which apps may run there
(:class:`LinkPolicy`), and which apps a data owner's node runs, and how much of it one
run may ask (:class:`NodePolicy`).

Both are TOML files. A link's::

    [nodes]
    required-attributes = {region = "eu"}   # a node must advertise these values

    [apps]
    allowed-bundles = ["<sha256 of a bundle>"]
    trusted-signers = ["ed25519:..."]        # or any bundle these keys signed

A node's takes the same ``[apps]`` table, and::

    [runs]
    max-rounds = 10           # rounds of one run this node answers
    max-run-seconds = 3600    # from the first message of a run

    [errors]
    details = "summary"       # "full" (default): tracebacks go back to the run

An app may run if its bundle's hash is on ``allowed-bundles`` or it carries a valid
signature by one of ``trusted-signers``; with neither list, any app may. Every check
returns a :class:`Decision` that names the rule it applied, so that a refusal tells the
run's submitter which rule of whose policy to ask about.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from ..core import ConfigError, PermissionDeniedError
from ._keys import public_key_from_text, public_key_text
from ._signatures import BundleSignature

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["AppRules", "Decision", "LinkPolicy", "NodePolicy", "summarize_error"]

_SHA256 = re.compile(r"[0-9a-f]{64}")
#: What a file path in an error's text looks like: absolute POSIX, home or Windows.
_PATH = re.compile(r"(?<![\w.~-])(?:~?/|[A-Za-z]:\\)[^\s'\"<>()\[\]{},;]+")
_SUMMARY_CHARS = 200


@dataclasses.dataclass(frozen=True)
class Decision:
    """What a policy decided, and by which rule.

    ``str()`` reads as the refusal a caller gets, e.g. ``node policy
    (/etc/corolla/policy.toml, [apps] allowed-bundles): bundle 1a2b... is not on the
    allow-list``.
    """

    allowed: bool
    #: The policy and the rule: ``link policy (FILE, [apps] allowed-bundles)``.
    rule: str
    #: Why, in one sentence.
    reason: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.reason}"

    def enforce(self) -> Decision:
        """This decision, if it allows.

        Raises
        ------
        PermissionDeniedError
            If it refuses, with the rule and the reason as its message.
        """
        if not self.allowed:
            raise PermissionDeniedError(str(self))
        return self


@dataclasses.dataclass(frozen=True)
class AppRules:
    """The ``[apps]`` table of a policy: bundles allowed by hash, and the keys whose
    signature admits a bundle."""

    allowed_bundles: frozenset[str] = frozenset()
    trusted_signers: frozenset[str] = frozenset()

    def check(
        self, where: str, sha256: str, signatures: Iterable[BundleSignature] = ()
    ) -> Decision:
        """Whether the bundle ``sha256``, with ``signatures``, may run; ``where`` names
        the policy (``node policy (FILE``)."""
        if not self.allowed_bundles and not self.trusted_signers:
            return Decision(True, f"{where}, [apps])", "any app may run")
        if sha256 in self.allowed_bundles:
            return Decision(
                True, f"{where}, [apps] allowed-bundles)", f"bundle {sha256} is on the allow-list"
            )
        notes = []
        for signature in signatures:
            key = signature.public_key
            if key not in self.trusted_signers:
                notes.append(f"{_short_key(key)} is not a trusted signer")
            elif not signature.verifies(sha256):
                notes.append(f"the signature by {key} does not verify")
            else:
                return Decision(
                    True, f"{where}, [apps] trusted-signers)", f"bundle {sha256} is signed by {key}"
                )
        rules = [
            name
            for name, values in (
                ("allowed-bundles", self.allowed_bundles),
                ("trusted-signers", self.trusted_signers),
            )
            if values
        ]
        wanted = []
        if self.allowed_bundles:
            wanted.append("is not on the allow-list")
        if self.trusted_signers:
            wanted.append("carries no valid signature by a trusted signer")
        reason = f"bundle {sha256} " + " and ".join(wanted)
        if notes:
            reason += f" ({'; '.join(notes)})"
        return Decision(False, f"{where}, [apps] {' and '.join(rules)})", reason)


@dataclasses.dataclass(frozen=True)
class LinkPolicy:
    """What a link admits: the nodes that may join, the apps that may run.

    Read one with :meth:`load`; the default admits every node and app.
    """

    #: Where it comes from: the file it was read from, or who set it ("" for one made
    #: in code).
    path: str = ""
    #: Attribute values a node must advertise to register, as strings.
    required_attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    apps: AppRules = AppRules()
    #: The TOML it was read from.
    text: str = dataclasses.field(default="", compare=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LinkPolicy:
        """The policy in the TOML file ``path``.

        Raises
        ------
        ConfigError
            If the file cannot be read, is not TOML, or holds a table, key or value a
            link policy does not take (the error names the file, the key and what is
            allowed).
        """
        return cls.loads(_read_text(Path(path), f"link policy {path}"), str(path))

    @classmethod
    def loads(cls, text: str, source: str) -> LinkPolicy:
        """The policy in TOML ``text``, which came from ``source`` (a file, who set it).

        Raises
        ------
        ConfigError
            As :meth:`load`, naming ``source``.
        """
        name = f"link policy {source}"
        tables = _parse(text, name, {"nodes": ("required-attributes",), "apps": _APP_KEYS})
        nodes = tables.get("nodes", {})
        return cls(
            path=source,
            required_attributes=_attributes(name, nodes.get("required-attributes", {})),
            apps=_app_rules(name, tables.get("apps", {})),
            text=text,
        )

    @property
    def _where(self) -> str:
        return f"link policy ({self.path or 'built in'}"

    def check_node(self, attributes: Mapping[str, str]) -> Decision:
        """Whether a node advertising ``attributes`` (as strings) may register."""
        if not self.required_attributes:
            return Decision(True, f"{self._where}, [nodes])", "any node may join")
        rule = f"{self._where}, [nodes] required-attributes)"
        for key, wanted in self.required_attributes.items():
            if key not in attributes:
                return Decision(
                    False,
                    rule,
                    f"the node does not advertise {key!r}; nodes of this federation advertise "
                    f"{key}={wanted} (corolla node --attributes {key}={wanted})",
                )
            if attributes[key] != wanted:
                return Decision(
                    False,
                    rule,
                    f"the node advertises {key}={attributes[key][:80]!r}; this federation "
                    f"admits only {key}={wanted!r}",
                )
        shown = ", ".join(f"{k}={v}" for k, v in self.required_attributes.items())
        return Decision(True, rule, f"the node advertises {shown}")

    def check_app(self, sha256: str, signatures: Iterable[BundleSignature] = ()) -> Decision:
        """Whether the bundle ``sha256``, with ``signatures``, may run on the link."""
        return self.apps.check(self._where, sha256, signatures)


@dataclasses.dataclass(frozen=True)
class NodePolicy:
    """What a data owner's node runs, and how much one run may ask of it.

    Read one with :meth:`load`; the default runs every app without limits and sends
    error details back in full.
    """

    path: str = ""
    apps: AppRules = AppRules()
    #: Rounds of one run the node answers; None for no limit.
    max_rounds: int | None = None
    #: Seconds from a run's first message during which the node answers it; None for
    #: no limit.
    max_run_seconds: float | None = None
    #: What an error reply of a failed ClientApp carries: its traceback ("full") or one
    #: line without file paths ("summary").
    details: Literal["full", "summary"] = "full"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NodePolicy:
        """The policy in the TOML file ``path``.

        Raises
        ------
        ConfigError
            If the file cannot be read, is not TOML, or holds a table, key or value a
            node policy does not take (the error names the file, the key and what is
            allowed).
        """
        name = f"node policy {path}"
        tables = _read(
            Path(path),
            name,
            {
                "apps": _APP_KEYS,
                "runs": ("max-rounds", "max-run-seconds"),
                "errors": ("details",),
            },
        )
        runs, errors = tables.get("runs", {}), tables.get("errors", {})
        details = errors.get("details", "full")
        if details not in ("full", "summary"):
            raise ConfigError(
                f'{name}: [errors] details is "full" or "summary", got {_shown(details)}'
            )
        return cls(
            path=str(path),
            apps=_app_rules(name, tables.get("apps", {})),
            max_rounds=_positive_int(name, "[runs] max-rounds", runs.get("max-rounds")),
            max_run_seconds=_positive_seconds(
                name, "[runs] max-run-seconds", runs.get("max-run-seconds")
            ),
            details=details,
        )

    @property
    def _where(self) -> str:
        return f"node policy ({self.path or 'built in'}"

    def check_app(self, sha256: str, signatures: Iterable[BundleSignature] = ()) -> Decision:
        """Whether this node runs the bundle ``sha256``, with ``signatures``."""
        return self.apps.check(self._where, sha256, signatures)

    def check_run(self, run_id: int, rounds: int, seconds: float) -> Decision:
        """Whether this node answers a message of run ``run_id``, its ``rounds``-th round
        here, ``seconds`` after the run's first message came."""
        if self.max_rounds is not None and rounds > self.max_rounds:
            return Decision(
                False,
                f"{self._where}, [runs] max-rounds)",
                f"run {run_id} asked for a round beyond the {self.max_rounds} this node "
                "answers of a run",
            )
        if self.max_run_seconds is not None and seconds > self.max_run_seconds:
            return Decision(
                False,
                f"{self._where}, [runs] max-run-seconds)",
                f"run {run_id} has asked this node for {seconds:.0f} s; it answers a run "
                f"for at most {self.max_run_seconds:g} s",
            )
        return Decision(True, f"{self._where}, [runs])", f"run {run_id} is within its limits")

    def error_reason(self, reason: str) -> str:
        """The reason an error reply carries: ``reason`` as is, or its summary (see
        :func:`summarize_error`) when the policy says ``details = "summary"``."""
        return reason if self.details == "full" else summarize_error(reason)


def summarize_error(reason: str) -> str:
    """``reason``'s first line, without file paths, at most 200 characters, marked as
    a summary: what a node whose policy keeps its error details tells a run (the
    traceback stays in its log). A reason of one short line without paths stays whole."""
    whole = reason.strip()
    first = _PATH.sub("<path>", whole.splitlines()[0] if whole else "error")
    if len(first) > _SUMMARY_CHARS:
        first = first[: _SUMMARY_CHARS - 3] + "..."
    if first == whole:  # one line, no path: nothing to withhold
        return whole
    return f"{first} (details withheld by the node's policy)"


_APP_KEYS = ("allowed-bundles", "trusted-signers")


def _read(path: Path, name: str, known: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    return _parse(_read_text(path, name), name, known)


def _read_text(path: Path, name: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}: cannot be read: {exc}") from None


def _parse(text: str, name: str, known: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{name}: not valid TOML: {exc}") from None
    tables = ", ".join(f"[{t}]" for t in known)
    for table, content in document.items():
        if table not in known:
            raise ConfigError(f"{name}: unknown table [{table}]; a policy here has {tables}")
        if not isinstance(content, dict):
            raise ConfigError(f"{name}: {table} must be a table [{table}], got {_shown(content)}")
        for key in content:
            if key not in known[table]:
                raise ConfigError(
                    f"{name}: unknown key {key!r} in [{table}]; it takes " + ", ".join(known[table])
                )
    return document


def _app_rules(name: str, table: Mapping[str, Any]) -> AppRules:
    bundles = _strings(name, "[apps] allowed-bundles", table.get("allowed-bundles", []))
    for i, bundle in enumerate(bundles):
        if not _SHA256.fullmatch(bundle.lower()):
            raise ConfigError(
                f"{name}: [apps] allowed-bundles[{i}] = {bundle[:80]!r} is not a SHA-256 in "
                "64 hex digits (as `corolla ls --format json` shows it, or a refusal names it)"
            )
    signers = _strings(name, "[apps] trusted-signers", table.get("trusted-signers", []))
    keys = []
    for i, signer in enumerate(signers):
        try:
            keys.append(public_key_text(public_key_from_text(signer)))
        except ConfigError as exc:
            raise ConfigError(
                f"{name}: [apps] trusted-signers[{i}]: {exc} (`corolla keys show FILE` prints "
                "a signing key's public key)"
            ) from None
    return AppRules(frozenset(b.lower() for b in bundles), frozenset(keys))


def _strings(name: str, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{name}: {key} must be a list of strings, got {_shown(value)}")
    return value


def _attributes(name: str, value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ConfigError(
            f'{name}: [nodes] required-attributes must be a table, e.g. {{region = "eu"}}, '
            f"got {_shown(value)}"
        )
    attributes = {}
    for key, wanted in value.items():
        if isinstance(wanted, bool):
            attributes[key] = str(wanted).lower()  # as a node's attributes read
        elif isinstance(wanted, str | int | float):
            attributes[key] = str(wanted)
        else:
            raise ConfigError(
                f"{name}: [nodes] required-attributes.{key} must be a string, number or "
                f"boolean, got {_shown(wanted)}"
            )
    return attributes


def _positive_int(name: str, key: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"{name}: {key} must be a whole number of at least 1, got {_shown(value)}"
        )
    return value


def _positive_seconds(name: str, key: str, value: Any) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigError(f"{name}: {key} must be a number of seconds above 0, got {_shown(value)}")
    return float(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _short_key(key: str) -> str:
    return key if len(key) <= 60 else key[:57] + "..."
