#!/usr/bin/env python3
"""Writes docs/openapi.yaml into Sources/Coordinator/HTTP/OpenAPIDocument.swift (the text served at
GET /openapi.yaml). HTTPAPITests fails while the two differ; run this after editing the YAML."""
import pathlib

root = pathlib.Path(__file__).resolve().parent.parent
yaml = (root / "docs/openapi.yaml").read_text()
assert '"""#' not in yaml, "the YAML must not contain the raw string's delimiter"
swift = root / "Sources/Coordinator/HTTP/OpenAPIDocument.swift"
text = swift.read_text()
head = text[: text.index('    static let yaml = #"""\n') + len('    static let yaml = #"""\n')]
# A multi-line literal drops the newline before its closing delimiter: add one to keep the YAML's own.
swift.write_text(head + yaml + '\n"""#\n}\n')
