"""Where a worker configuration comes from: the YAML file, ``INFINITIC_*`` environment variables,
explicit overrides (the CLI's flags), in that order of precedence; ``provenance`` remembers which
key an environment variable or an override set, for the error messages."""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import msgspec.inspect as mi
import yaml

from infinitic_py.config.schema import WorkerConfig, one_line
from infinitic_py.errors import ConfigError

ENV_PREFIX: Final = "INFINITIC_"
CONFIG_PATH_ENV: Final = "INFINITIC_CONFIG"
"""When ``load_config`` gets no path, it reads the file this variable names (if set)."""

_IDENTIFIER_RE: Final = re.compile(r"[A-Za-z_]\w*")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: SafeLoader reports it itself
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml_file(source: str) -> dict[str, Any]:
    try:
        with open(source, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"{source}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc.strerror or exc}") from None
    try:
        data = yaml.load(raw, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(f"{source}: {_describe_yaml_error(exc)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {one_line(str(exc))}") from None
    if data is None:
        raise ConfigError(f"{source}: file is empty (expected a mapping with a 'services' list)")
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at top level, got {show(data)}")
    return data


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = one_line(exc.problem or "syntax error")
    context = f" ({one_line(exc.context)})" if exc.context else ""
    return f"invalid YAML{where}: {problem}{context}"


Path = tuple[str | int, ...]
ROOT_TYPE: Final[mi.Type] = mi.type_info(WorkerConfig)


def strip_optional(t: mi.Type) -> mi.Type:
    """The non-null member of ``X | None``; unions of several others are returned as is."""
    if isinstance(t, mi.UnionType):
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        if len(members) == 1:
            return members[0]
    return t


def container(t: mi.Type) -> mi.Type:
    """The struct / list / dict member of a type (ignoring null and scalars in unions)."""
    t = strip_optional(t)
    if isinstance(t, mi.UnionType):
        for member in t.types:
            if isinstance(member, mi.StructType | mi.ListType | mi.TupleType |
                          mi.VarTupleType | mi.DictType):
                return member
    return t


def field(struct: mi.StructType, key: str) -> mi.Field | None:
    for f in struct.fields:
        if f.encode_name == key:
            return f
    return None


def field_names(struct: mi.StructType) -> list[str]:
    return [f.encode_name for f in struct.fields]


def suggest(key: str, candidates: Sequence[str]) -> str:
    matches = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def format_path(path: Sequence[str | int]) -> str:
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        elif _IDENTIFIER_RE.fullmatch(seg):
            out += f".{seg}" if out else seg
        else:
            out += f"[{seg!r}]"
    return out


def where(path: Sequence[str | int]) -> str:
    return format_path(path) if path else "top level"


def apply_env(
    data: dict[str, Any],
    environ: Mapping[str, str],
    source: str,
    provenance: dict[Path, str],
) -> None:
    sections = [f.encode_name for f in root_struct().fields]
    for var in sorted(environ):
        if not var.upper().startswith(ENV_PREFIX):
            continue
        rest = var[len(ENV_PREFIX):]
        if "__" not in rest:
            lowered = rest.lower()
            for section in sections:
                if lowered.startswith(section + "_") and len(lowered) > len(section) + 1:
                    fixed = f"{ENV_PREFIX}{section.upper()}__{rest[len(section) + 1:]}"
                    raise ConfigError(
                        f"{var}: not a config override; separate the section with a double "
                        f"underscore (did you mean {fixed}?)"
                    )
            continue
        segments = [seg.lower() for seg in rest.split("__")]
        path, leaf = _resolve_path(var, segments, env_style=True)
        value = _parse_env_value(var, environ[var], leaf)
        _set_path(data, path, value, where=var, source=source)
        provenance[path] = var


def root_struct() -> mi.StructType:
    assert isinstance(ROOT_TYPE, mi.StructType)
    return ROOT_TYPE


def _resolve_path(
    var: str, segments: list[str], *, env_style: bool
) -> tuple[Path, mi.Type]:
    """Map ``["services", "0", "concurrency"]`` onto the schema; errors name ``var``."""
    t: mi.Type = ROOT_TYPE
    path: list[str | int] = []
    for n, seg in enumerate(segments):
        here = container(t)
        if not seg:
            raise ConfigError(f"{var}: empty key segment (a triple underscore?)")
        if isinstance(here, mi.StructType):
            f = field(here, seg)
            if f is None:
                names = field_names(here)
                hint = suggest(seg, names)
                matches = difflib.get_close_matches(seg, names, n=1, cutoff=0.6)
                if matches and env_style:
                    fixed = [*(str(p) for p in path), matches[0], *segments[n + 1:]]
                    fixed = [part.upper() for part in fixed]
                    hint = f" (did you mean {ENV_PREFIX}{'__'.join(fixed)}?)"
                raise ConfigError(f"{var}: unknown key {seg!r} at {where(path)}{hint}")
            path.append(f.encode_name)
            t = f.type
        elif isinstance(here, mi.ListType | mi.VarTupleType | mi.TupleType):
            if not seg.isdigit():
                raise ConfigError(
                    f"{var}: {format_path(path)} is a list; expected an index, got {seg!r}"
                )
            path.append(int(seg))
            t = here.item_types[0] if isinstance(here, mi.TupleType) else here.item_type
        elif isinstance(here, mi.DictType):
            path.append(seg)
            t = here.value_type
        else:
            raise ConfigError(
                f"{var}: {format_path(path)} is a single value; it has no key {seg!r}"
            )
    return tuple(path), t


def _accepts(t: mi.Type, kinds: tuple[type[mi.Type], ...]) -> bool:
    members = t.types if isinstance(t, mi.UnionType) else (t,)
    return any(isinstance(m, kinds) for m in members)


def _parse_env_value(var: str, raw: str, leaf: mi.Type) -> Any:
    nullable = _accepts(leaf, (mi.NoneType,))
    if nullable and raw.strip() in ("", "null", "~", "None"):
        return None
    if _accepts(leaf, (mi.StrType,)) or (
        isinstance(strip_optional(leaf), mi.LiteralType)
    ):
        return raw  # strings are taken verbatim: a tenant named "no" stays "no"
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{var}: cannot read {raw!r} as a YAML value: "
                          f"{one_line(str(exc))}") from None
    if isinstance(value, str) and _accepts(leaf, (mi.IntType, mi.FloatType)):
        for convert in (int, float):
            try:
                return convert(value)
            except ValueError:
                pass
    return value


def apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any], source: str,
                    provenance: dict[Path, str],
                    labels: Mapping[str, str] | None = None) -> None:
    """``labels``: how errors name an override (a CLI flag), else ``override 'key'``."""
    for key, value in overrides.items():
        label = (labels or {}).get(key) or f"override {key!r}"
        path, _ = _resolve_path(label, str(key).split("."), env_style=False)
        _set_path(data, path, copy.deepcopy(value), where=label, source=source)
        provenance[path] = label


def _set_path(
    data: dict[str, Any], path: Path, value: Any, *, where: str, source: str
) -> None:
    node: Any = data
    for i, seg in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(seg, int):
            if not isinstance(node, list) or seg >= len(node):
                size = len(node) if isinstance(node, list) else 0
                raise ConfigError(
                    f"{where}: {source} has {size} entr{'y' if size == 1 else 'ies'} in "
                    f"{format_path(path[:i]) or 'top level'}; index {seg} does not exist"
                )
            node = node[seg]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"{where}: {format_path(path[:i])} is not a mapping")
            child = node.get(seg)
            if child is None:
                if isinstance(nxt, int):
                    raise ConfigError(
                        f"{where}: {source} has no {format_path(path[: i + 1])} list to index"
                    )
                child = node[seg] = {}
            node = child
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"{where}: index {last} of {format_path(path[:-1])} does not exist")
        node[last] = value
    elif not isinstance(node, dict):
        raise ConfigError(f"{where}: {format_path(path[:-1])} is not a mapping")
    elif isinstance(value, Mapping) and isinstance(node.get(last), dict):
        node[last] = _deep_merge(node[last], value)
    else:
        node[last] = value


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged




def show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list" if value else "an empty list"
    return f"a {type(value).__name__}"
