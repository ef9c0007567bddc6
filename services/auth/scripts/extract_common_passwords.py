"""Write ``src/runyard/auth/data/common-passwords.txt`` from zxcvbn's password frequency list.

    uvx --from zxcvbn==4.5.0 python services/auth/scripts/extract_common_passwords.py

zxcvbn is not a dependency of the service: it is only the source of the bundled list.
"""

from __future__ import annotations

from pathlib import Path

from zxcvbn.frequency_lists import FREQUENCY_LISTS  # type: ignore[import-not-found]

TARGET = Path(__file__).resolve().parents[1] / "src/runyard/auth/data/common-passwords.txt"

HEADER = """\
# Common passwords: the "passwords" frequency list (30,000 entries) shipped with zxcvbn 4.5.0
# for Python (https://github.com/dwolfhub/zxcvbn-python; MIT License, Copyright (c) 2016 Daniel
# Wolf), taken from Dropbox's zxcvbn (https://github.com/dropbox/zxcvbn; MIT License, Copyright
# (c) 2012-2016 Dan Wheeler and Dropbox, Inc.), which built it from Mark Burnett's published set
# of 10 million leaked passwords (xato.net). Lower case, most frequent first, one per line.
# Regenerate: uvx --from zxcvbn==4.5.0 python services/auth/scripts/extract_common_passwords.py
"""


def main() -> None:
    seen: dict[str, None] = {}
    for word in FREQUENCY_LISTS["passwords"]:
        word = word.strip().lower()
        if word and not word.startswith("#"):
            seen.setdefault(word)
    TARGET.write_text(HEADER + "\n".join(seen) + "\n")
    print(f"{TARGET}: {len(seen)} passwords")


if __name__ == "__main__":
    main()
