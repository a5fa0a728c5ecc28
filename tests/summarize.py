#!/usr/bin/env python3
"""Counts test cases from Bazel's JUnit XML files (bazel-testlogs/**/test.xml)
and prints one closing line: 'N passed, N failed, N skipped'."""
import glob
import os
import sys
import xml.etree.ElementTree as ET


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "bazel-testlogs"
    passed = failed = skipped = 0
    for path in glob.glob(os.path.join(root, "**", "test.xml"), recursive=True):
        try:
            tree = ET.parse(path)
        except ET.ParseError:
            failed += 1
            continue
        cases = tree.getroot().iter("testcase")
        for case in cases:
            if case.find("failure") is not None or case.find("error") is not None:
                failed += 1
            elif case.find("skipped") is not None or case.get("status") == "notrun":
                skipped += 1
            else:
                passed += 1
    print(f"{passed} passed, {failed} failed, {skipped} skipped")


if __name__ == "__main__":
    main()
