"""Corpus spans: a corpus that grows by deliveries, each in its own folder or file, named by number.

A scheduled pipeline should ingest the new delivery, not the whole history again, and a changed
delivery should be re-ingested whole. As TFX's ExampleGen does with its input patterns, the corpus
path then holds `{SPAN}` (the delivery's number) and optionally `{VERSION}` (its re-issue):
`notes/span-{SPAN}/`, `notes-{SPAN}.csv`, `notes/{SPAN}/v{VERSION}/*.csv`. Each placeholder stands
for digits (leading zeros allowed) in one path segment, and the rest of the pattern is a glob (`*`,
`?`, `[...]`, never matching a hidden name), so it works on local disk and gs:// alike.

Resolution lists what the pattern matches, groups the matches by span number, takes the highest
version within each span, and keeps the newest `spans` span numbers (a rolling window; fewer than
asked is not an error). A span's `path` is the pattern with its numbers filled in; what it matches
is read as the format reads `input_base` today: a file as is, a folder searched for the format's
files. A path without `{SPAN}` resolves to itself as the one span, numbered None: nothing changes.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from tfx.dsl.io import fileio

from components.clinical_example_gen import readers

SPAN_SPEC = "{SPAN}"
VERSION_SPEC = "{VERSION}"
#: The exec properties: how many newest spans a run ingests, and what the driver resolved (JSON).
SPANS = "spans"
RESOLVED_SPANS = "resolved_spans"

#: Placeholders TFX knows that this pattern does not (widths, dates), so they fail instead of being
#: taken as literal folder names.
_UNSUPPORTED_SPEC = re.compile(r"\{(?:SPAN|VERSION)[^}]+\}|\{(?:YYYY|MM|DD)\}")
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclasses.dataclass(frozen=True)
class ResolvedSpan:
    """One span a run ingests: its number (None for a path without `{SPAN}`), its version (None
    without `{VERSION}`), and its path (the pattern with both numbers filled in, as they were spelled)."""

    span: int | None
    version: int | None
    path: str

    def to_json(self) -> dict[str, Any]:
        return {"span": self.span, "version": self.version, "path": self.path}


@dataclasses.dataclass(frozen=True)
class SpanFile:
    """An input file of a span; `name` is relative to the span's path (the folder it names, or the
    fixed folders before its first wildcard), as names are relative to `input_base` without spans."""

    path: str
    name: str
    span: int | None


def has_span(pattern: str) -> bool:
    """Whether `pattern` names spans; raises ValueError for a pattern that cannot be resolved: a
    placeholder twice, `{VERSION}` without `{SPAN}`, or a placeholder form that is not supported."""
    if unsupported := _UNSUPPORTED_SPEC.search(pattern):
        raise ValueError(
            f"corpus path {pattern}: placeholder {unsupported.group()} is not supported; "
            f"use {SPAN_SPEC} and {VERSION_SPEC} (digits, leading zeros allowed)"
        )
    for spec in (SPAN_SPEC, VERSION_SPEC):
        if pattern.count(spec) > 1:
            raise ValueError(f"corpus path {pattern}: {spec} may appear once, found {pattern.count(spec)}")
    if VERSION_SPEC in pattern and SPAN_SPEC not in pattern:
        raise ValueError(f"corpus path {pattern}: {VERSION_SPEC} needs {SPAN_SPEC} in the same path")
    return SPAN_SPEC in pattern


def check_spans(pattern: str, spans: int) -> None:
    """Raises ValueError unless `spans` is a positive int that `pattern` can use (more than one span
    needs `{SPAN}`), or the pattern is malformed (see `has_span`)."""
    if not isinstance(spans, int) or isinstance(spans, bool) or spans < 1:
        raise ValueError(f"spans must be a positive integer, got {spans!r}")
    if not has_span(pattern) and spans > 1:
        raise ValueError(f"spans={spans} needs {SPAN_SPEC} in the corpus path, got {pattern}")


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """The regex a path that `glob(pattern)` returns must match, with groups `span` and `version`.

    The glob already applied the wildcards; the regex takes the numbers out, keeps only digits for
    the placeholders, and drops hidden names (as a shell glob does), which fileio's glob returns.
    """
    parts, index = [], 0
    while index < len(pattern):
        segment_start = index == 0 or pattern[index - 1] == "/"
        hidden_guard = r"(?!\.)" if segment_start else ""
        if pattern.startswith(SPAN_SPEC, index):
            parts.append(r"(?P<span>\d+)")
            index += len(SPAN_SPEC)
            continue
        if pattern.startswith(VERSION_SPEC, index):
            parts.append(r"(?P<version>\d+)")
            index += len(VERSION_SPEC)
            continue
        char = pattern[index]
        index += 1
        if char == "*":
            parts.append(hidden_guard + r"[^/]*")
        elif char == "?":
            parts.append(hidden_guard + r"[^/]")
        elif char == "[" and (end := pattern.find("]", index + 1)) != -1 and "/" not in pattern[index:end]:
            members = pattern[index:end]
            negate = members.startswith("!")
            members = re.sub(r"([\\^])", r"\\\1", members[1:] if negate else members)
            parts.append(hidden_guard + "[" + ("^/" if negate else "") + members + "]")
            index = end + 1
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts))


def _to_glob(pattern: str) -> str:
    return pattern.replace(SPAN_SPEC, "*").replace(VERSION_SPEC, "*").rstrip("/")


def resolve(pattern: str, spans: int = 1) -> tuple[ResolvedSpan, ...]:
    """The newest `spans` spans that `pattern` matches, oldest first, each at its highest version.

    A pattern without `{SPAN}` is its own one span (not checked here; listing its files does).
    Raises FileNotFoundError naming the pattern when nothing matches it, and ValueError for a
    malformed pattern or a span (or version) number spelled two ways (`3` and `03`), which would
    leave its path ambiguous.
    """
    check_spans(pattern, spans)
    if not has_span(pattern):
        return (ResolvedSpan(None, None, pattern),)
    with_version = VERSION_SPEC in pattern
    regex = _glob_regex(pattern.rstrip("/"))
    spellings: dict[tuple[int, int | None], set[tuple[str, str]]] = defaultdict(set)
    for path in fileio.glob(_to_glob(pattern)):
        match = regex.fullmatch(path.rstrip("/"))
        if match is None:
            continue
        version = match.group("version") if with_version else ""
        spellings[int(match.group("span")), int(version) if version else None].add(
            (match.group("span"), version)
        )
    if not spellings:
        digits = f"{SPAN_SPEC} and {VERSION_SPEC}" if with_version else SPAN_SPEC
        raise FileNotFoundError(f"corpus path {pattern}: nothing matches it ({digits} standing for digits)")
    versions: dict[int, list[int | None]] = defaultdict(list)
    for span, version in spellings:
        versions[span].append(version)
    resolved = []
    for span in sorted(versions)[-spans:]:
        version = max(versions[span]) if with_version else None
        written = spellings[span, version]
        if len(written) > 1:
            shown = sorted(pattern.replace(SPAN_SPEC, s).replace(VERSION_SPEC, v) for s, v in written)
            which = f"span {span}" + ("" if version is None else f" version {version}")
            raise ValueError(f"corpus path {pattern}: {which} is written several ways: {shown}")
        span_text, version_text = next(iter(written))
        path = pattern.replace(SPAN_SPEC, span_text).replace(VERSION_SPEC, version_text)
        resolved.append(ResolvedSpan(span, version, path))
    return tuple(resolved)


def to_json(resolved: Sequence[ResolvedSpan]) -> str:
    """The `resolved_spans` exec property: what the driver resolved, for the executor to read."""
    return json.dumps([span.to_json() for span in resolved], sort_keys=True)


def from_json(text: str) -> tuple[ResolvedSpan, ...]:
    """Parses `to_json`'s output; raises ValueError naming the exec property when it is malformed."""
    try:
        items = json.loads(text)
        resolved = tuple(ResolvedSpan(item["span"], item["version"], item["path"]) for item in items)
    except (json.JSONDecodeError, TypeError, KeyError) as error:
        raise ValueError(f"exec property {RESOLVED_SPANS!r} is not a list of spans: {error}") from None
    for span in resolved:
        numbers_ok = all(n is None or (isinstance(n, int) and n >= 0) for n in (span.span, span.version))
        if not numbers_ok or not isinstance(span.path, str) or not span.path:
            raise ValueError(f"exec property {RESOLVED_SPANS!r}: bad span {span.to_json()}")
    if not resolved:
        raise ValueError(f"exec property {RESOLVED_SPANS!r} lists no span")
    return resolved


def _fixed_folder(path: str) -> str:
    """The folders of `path` before its first segment with a wildcard ("" when that is the first)."""
    wildcard = _GLOB_CHARS.search(path)
    return path[: max(path.rfind("/", 0, wildcard.start()), 0)] if wildcard else path


def span_files(span: ResolvedSpan, input_format: str) -> list[SpanFile]:
    """The input files of one span, sorted by name. A path without wildcards is read as `input_base`
    is (`readers.list_input_files`); with wildcards, each file it matches is taken and each folder
    searched for the format's files, names relative to the fixed folders before the first wildcard."""
    path = span.path.rstrip("/") or span.path
    if span.span is None or not _GLOB_CHARS.search(path):
        return [SpanFile(p, name, span.span) for p, name in readers.list_input_files(path, input_format)]
    root = _fixed_folder(path)
    regex = _glob_regex(path)
    found = []
    for match in fileio.glob(path):
        match = match.rstrip("/")
        if regex.fullmatch(match) is None:
            continue
        relative = match[len(root) + 1 :] if root and match.startswith(root + "/") else match
        if not fileio.isdir(match):
            found.append(SpanFile(match, relative, span.span))
            continue
        for file_path, name in readers.list_input_files(match, input_format):
            found.append(SpanFile(file_path, f"{relative}/{name}", span.span))
    return sorted(found, key=lambda file: file.name)


def list_files(resolved: Sequence[ResolvedSpan], input_format: str) -> list[SpanFile]:
    """Every resolved span's input files, span by span (oldest first)."""
    return [file for span in resolved for file in span_files(span, input_format)]
