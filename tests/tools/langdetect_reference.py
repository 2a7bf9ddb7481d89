#!/usr/bin/env python3
"""What langdetect (the language identifier IFEval's official checkers call)
says about each text: the independent reference for tess's identify_language
(eval/tasks/language_id.h).

Usage: langdetect_reference.py TEXTS.json -> JSON list on stdout, one code per
text ("" where langdetect raises, i.e. the text has no letters). Seeded as
the official evaluation leaves it (DetectorFactory.seed = 0), so that
langdetect's random sampling of n-grams is repeatable.
"""
import json
import sys

from langdetect import DetectorFactory, detect
from langdetect.lang_detect_exception import LangDetectException

DetectorFactory.seed = 0


def code(text):
    try:
        return detect(text)
    except LangDetectException:
        return ""


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        print(json.dumps([code(t) for t in json.load(f)]))
