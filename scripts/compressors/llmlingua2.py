"""A `command` variant: LLMLingua-2 (Pan et al., 2024), token-level compression by a small classifier.

Needs `pip install llmlingua` and the classifier's weights on the machine (no job downloads anything: fetch
them once where there is a network, e.g. `huggingface-cli download
microsoft/llmlingua-2-xlm-roberta-large-meetingbank --local-dir resources/models/llmlingua2`, and pass that
directory). Reads {"id", "title", "text"} JSON lines on stdin, writes {"id", "text"} lines on stdout.
Not run by lorapress's tests: its weights are not on the test machines.

    compression:
      variants:
        lingua_33:
          kind: command
          command: python3 scripts/compressors/llmlingua2.py --model resources/models/llmlingua2 --rate 0.33
          target_trr: 67
"""

import argparse
import json
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the LLMLingua-2 classifier: a local directory (or hub id)")
    parser.add_argument("--rate", type=float, required=True, help="share of tokens kept, e.g. 0.33")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    try:
        from llmlingua import PromptCompressor
    except ImportError:
        sys.exit("llmlingua is not installed: pip install llmlingua")
    compressor = PromptCompressor(model_name=args.model, use_llmlingua2=True, device_map=args.device)
    for line in sys.stdin:
        item = json.loads(line)
        result = compressor.compress_prompt(item["text"], rate=args.rate, force_tokens=["\n", "?", "."])
        print(json.dumps({"id": item["id"], "text": result["compressed_prompt"]}, ensure_ascii=False))


if __name__ == "__main__":
    main()
