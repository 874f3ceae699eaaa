"""Regenerate the generated parts of README.md (the op support table) from the registry: `make docs`."""

from __future__ import annotations

import sys
from pathlib import Path

START, END = "<!-- ops-table:start -->", "<!-- ops-table:end -->"


def render(readme: str) -> str:
    from onnx2caffe.registry import support_table_markdown

    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{support_table_markdown()}{END}{tail}"


def main() -> int:
    path = Path(__file__).resolve().parents[1] / "README.md"
    text = path.read_text(encoding="utf-8")
    new = render(text)
    if new != text:
        path.write_text(new, encoding="utf-8")
        print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
