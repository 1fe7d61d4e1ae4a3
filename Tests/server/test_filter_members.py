"""FILTER on an indexed attribute (category) returns every element the filter matches: the
empty string, a value past LMDB's key limit, a number spelled as a string, a boolean against
"1" (the member set once missed these and, trusted without a check, returned nothing)."""
import json

LONG = "L" * 600

VALUES = {"empty": "", "long": LONG, "long2": LONG[:-1] + "M", "str5": "5.0", "num5": 5,
          "yes": True, "str1": "1", "abc": "abc"}

CASES = [
    ('.category == ""', {"empty"}),
    (f'.category == "{LONG}"', {"long"}),
    (".category == 5", {"str5", "num5"}),
    ('.category == "5"', {"num5"}),  # two strings compare as strings: "5.0" is not "5"
    ('.category == "1"', {"yes", "str1"}),
    (".category == true", {"yes", "str1"}),
    ('.category in ["", "abc"]', {"empty", "abc"}),
]


def test_filter_members_miss_no_match(server, r):
    for i, (name, value) in enumerate(VALUES.items()):
        r.execute_command("VADD", "things", "VALUES", 2, i, 1, name, "SETATTR", json.dumps({"category": value}))
    for _ in range(2):
        wrong = []
        for source, expected in CASES:
            got = set(r.execute_command("VSIM", "things", "VALUES", 2, 0, 1, "COUNT", 50, "FILTER", source))
            if got != expected:
                wrong.append((source[:40], sorted(got), sorted(expected)))
        assert wrong == []
        server.restart()
        r = server.client()
