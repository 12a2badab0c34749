"""A `command` variant in a few lines: keep each item's first N sentences.

lorapress runs it with one {"id", "title", "text"} JSON line per item on stdin (plus "target_trr" when the
variant sets one) and reads one {"id", "text"} line per item from stdout. A non-zero exit fails the job with
that status and the last line of stderr.

    compression:
      variants:
        lead_2: {kind: command, command: python3 scripts/compressors/first_sentences.py --sentences 2}
"""

import argparse
import json
import re
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2, help="sentences kept per item")
    args = parser.parse_args()
    for line in sys.stdin:
        item = json.loads(line)
        sentences = re.split(r"(?<=[.!?])\s+", item["text"].strip())
        print(json.dumps({"id": item["id"], "text": " ".join(sentences[: args.sentences])}, ensure_ascii=False))


if __name__ == "__main__":
    main()
