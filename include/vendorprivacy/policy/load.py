"""Load the notice and the register from YAML, with errors that name the file, vendor, feed and field."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .models import Notice, Register, Vendor

POLICY_DIR = Path(os.environ.get("VENDORPRIVACY_POLICY_DIR", Path(__file__).resolve().parents[2] / "policy"))


class PolicyError(ValueError):
    """The notice or the register is invalid; `problems` holds one readable line per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _where(raw: Any, loc: tuple) -> str:
    """Turn a pydantic location like ('feeds', 0, 'fields', 2, 'category') into
    "feed 'x' › field 'y' › category", naming list items by their id or name."""
    parts, node = [], raw
    for key in loc:
        if isinstance(key, int) and isinstance(node, list) and key < len(node):
            node = node[key]
            label = node.get("id") or node.get("name") or node.get("type") if isinstance(node, dict) else None
            parts[-1] = f"{parts[-1].rstrip('s')} '{label}'" if label else f"{parts[-1]}[{key}]"
            continue
        parts.append(str(key))
        node = node.get(key) if isinstance(node, dict) else None
    return " › ".join(p for p in parts if p not in ("sftp", "s3", "https", "function-after"))


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PolicyError([f"{path}: file not found"]) from None
    except yaml.YAMLError as e:
        raise PolicyError([f"{path}: not valid YAML: {e}"]) from None


def _problems(path: Path, prefix: str, raw: Any, err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        where = _where(raw, tuple(e["loc"]))
        msg = e["msg"].removeprefix("Value error, ")
        out.append(f"{path.name}: {prefix}{where}: {msg}" if where else f"{path.name}: {prefix}{msg}")
    return out


def load_notice(policy_dir: Path | None = None) -> Notice:
    path = (policy_dir or POLICY_DIR) / "notice.yaml"
    raw = _read_yaml(path)
    try:
        return Notice.model_validate(raw)
    except ValidationError as e:
        raise PolicyError(_problems(path, "", raw, e)) from None


def load_register(policy_dir: Path | None = None) -> Register:
    """Every vendors/*.yaml file is one vendor. All problems in all files are reported together."""
    folder = (policy_dir or POLICY_DIR) / "vendors"
    vendors: dict[str, Vendor] = {}
    problems: list[str] = []
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise PolicyError([f"{folder}: no vendor files (*.yaml)"])
    feed_owner: dict[str, str] = {}
    for path in files:
        raw = _read_yaml(path)
        name = raw.get("vendor", path.stem) if isinstance(raw, dict) else path.stem
        try:
            v = Vendor.model_validate(raw)
        except ValidationError as e:
            problems += _problems(path, f"vendor '{name}' › ", raw, e)
            continue
        if v.vendor != path.stem:
            problems.append(f"{path.name}: vendor '{v.vendor}' must live in {v.vendor}.yaml")
        if v.vendor in vendors:
            problems.append(f"{path.name}: vendor '{v.vendor}' is declared twice")
        for f in v.feeds:
            if f.id in feed_owner:
                problems.append(f"{path.name}: vendor '{v.vendor}' › feed '{f.id}': id already used by vendor '{feed_owner[f.id]}'")
            feed_owner[f.id] = v.vendor
        vendors[v.vendor] = v
    if problems:
        raise PolicyError(problems)
    return Register(vendors=vendors)


def key_path(vendor: Vendor, policy_dir: Path | None = None) -> Path:
    """Where the vendor's OpenPGP public key lives; VENDORPRIVACY_KEYS_DIR overrides (tests)."""
    base = Path(os.environ["VENDORPRIVACY_KEYS_DIR"]) if "VENDORPRIVACY_KEYS_DIR" in os.environ else (policy_dir or POLICY_DIR) / "keys"
    return base / (vendor.encryption.public_key or "")
