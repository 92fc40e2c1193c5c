"""Glob over role paths with `.` as the separator (the original uses gobwas/glob this way).

`*` matches within one path segment, `**` across segments, `?` one character of a segment,
`[...]` a character class (`[!...]` negated, `a-z` ranges) and `{a,b}` alternatives; everything
else is literal.

Patterns come from clients, so matching must stay cheap whatever they send: a pattern compiles to
a list of alternatives (braces expanded, at most `MAX_ALTERNATIVES`), each a sequence of tokens,
and a path is matched by advancing the set of live token positions one character at a time (a
Thompson simulation): time is linear in the path times the pattern, never exponential as with a
backtracking regular expression (`"**" * 16 + "Z"` took 10 s with `re`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

#: Longest pattern accepted, in characters.
MAX_PATTERN = 256
#: Most alternatives a pattern may expand to (`{a,b}{c,d}` is 4).
MAX_ALTERNATIVES = 64

_STAR = "*"  # any run of characters within a segment
_GLOBSTAR = "**"  # any run of characters, across segments


class PatternError(ValueError):
    """A role path pattern that cannot be used; the message says what and where."""


@dataclass(frozen=True)
class _Class:
    """`[...]`: characters and ranges, possibly negated; never matches the separator."""

    chars: frozenset[str]
    ranges: tuple[tuple[str, str], ...]
    negated: bool

    def accepts(self, char: str) -> bool:
        if char == ".":
            return False
        inside = char in self.chars or any(low <= char <= high for low, high in self.ranges)
        return inside != self.negated


_Token = str | _Class  # a literal character, "?", _STAR, _GLOBSTAR or a class


@dataclass(frozen=True)
class Glob:
    """A compiled pattern: `match(path)` is True when any alternative matches the whole path."""

    pattern: str
    alternatives: tuple[tuple[_Token, ...], ...]

    def match(self, path: str) -> bool:
        return any(_run(tokens, path) for tokens in self.alternatives)


def _step_ok(token: _Token, char: str) -> bool:
    if isinstance(token, _Class):
        return token.accepts(char)
    if token == "?" or token == _STAR:
        return char != "."
    if token == _GLOBSTAR:
        return True
    return token == char


def _closure(tokens: tuple[_Token, ...], states: set[int]) -> set[int]:
    """Add the positions reachable by letting stars match nothing."""
    out = set(states)
    for index in sorted(states):
        while index < len(tokens) and tokens[index] in (_STAR, _GLOBSTAR):
            index += 1
            out.add(index)
    return out


def _run(tokens: tuple[_Token, ...], path: str) -> bool:
    states = _closure(tokens, {0})
    for char in path:
        advanced: set[int] = set()
        for index in states:
            if index == len(tokens):
                continue
            token = tokens[index]
            if not _step_ok(token, char):
                continue
            # a star stays where it is after consuming; anything else moves on
            advanced.add(index if token in (_STAR, _GLOBSTAR) else index + 1)
        if not advanced:
            return False
        states = _closure(tokens, advanced)
    return len(tokens) in states


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> Glob:
    """Parse `pattern`; raise `PatternError` naming the position of anything wrong."""
    if len(pattern) > MAX_PATTERN:
        raise PatternError(
            f"role path pattern of {len(pattern)} characters is longer than the limit of {MAX_PATTERN}"
        )
    alternatives, _ = _parse(pattern, 0, top=True)
    return Glob(pattern, tuple(alternatives))


def _parse(pattern: str, pos: int, top: bool) -> tuple[list[tuple[_Token, ...]], int]:
    """Parse from `pos` up to the end (top) or to the `}` closing a brace group.

    Returns the alternatives and the position after the group.
    """
    branches: list[list[tuple[_Token, ...]]] = []
    current: list[tuple[_Token, ...]] = [()]
    while pos < len(pattern):
        char = pattern[pos]
        if char == "{":
            inner, pos = _parse(pattern, pos + 1, top=False)
            current = _product(current, inner, pattern)
            continue
        if not top and char == ",":
            branches.append(current)
            current = [()]
            pos += 1
            continue
        if not top and char == "}":
            branches.append(current)
            return _flatten(branches, pattern), pos + 1
        token, pos = _token(pattern, pos)
        current = [(*alt, token) for alt in current]
    if not top:
        raise PatternError(f"unbalanced '{{' in role path pattern {pattern!r}: add the closing '}}'")
    return current, pos


def _token(pattern: str, pos: int) -> tuple[_Token, int]:
    char = pattern[pos]
    if pattern.startswith("**", pos):
        return _GLOBSTAR, pos + 2
    if char in "*?":
        return char, pos + 1
    if char == "[":
        end = pattern.find("]", pos + 2)
        if end < 0:
            raise PatternError(f"unclosed '[' at position {pos} of role path pattern {pattern!r}")
        return _class(pattern, pos + 1, end), end + 1
    return char, pos + 1


def _class(pattern: str, start: int, end: int) -> _Class:
    body = pattern[start:end]
    negated = body.startswith("!")
    if negated:
        body = body[1:]
    chars: set[str] = set()
    ranges: list[tuple[str, str]] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            low, high = body[i], body[i + 2]
            if low > high:
                raise PatternError(
                    f"character range {low}-{high} at position {start + i} of role path pattern "
                    f"{pattern!r} is reversed: write {high}-{low}"
                )
            ranges.append((low, high))
            i += 3
        else:
            chars.add(body[i])
            i += 1
    return _Class(frozenset(chars), tuple(ranges), negated)


def _product(
    heads: list[tuple[_Token, ...]], tails: list[tuple[_Token, ...]], pattern: str
) -> list[tuple[_Token, ...]]:
    if len(heads) * len(tails) > MAX_ALTERNATIVES:
        raise PatternError(
            f"role path pattern {pattern!r} expands to more than {MAX_ALTERNATIVES} alternatives"
        )
    return [head + tail for head in heads for tail in tails]


def _flatten(branches: list[list[tuple[_Token, ...]]], pattern: str) -> list[tuple[_Token, ...]]:
    out = [alt for branch in branches for alt in branch]
    if len(out) > MAX_ALTERNATIVES:
        raise PatternError(
            f"role path pattern {pattern!r} expands to more than {MAX_ALTERNATIVES} alternatives"
        )
    return out


def matches(pattern: str, path: str) -> bool:
    return compile_glob(pattern).match(path)
