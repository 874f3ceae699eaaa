"""`onnx2caffe ops`: the table of supported ONNX ops (Markdown)."""

from __future__ import annotations

import argparse

HELP = "print the supported ONNX ops, their opsets and the Caffe layers they become (Markdown table)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    from onnx2caffe.registry import support_table_markdown

    print(support_table_markdown(), end="")
    return 0
