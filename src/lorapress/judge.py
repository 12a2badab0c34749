"""Stage `judge`: an LLM judge grades every answer: a 1-5 rubric for wiki, yes/no per LongMemEval type.

LongMemEval is graded as the benchmark's official evaluation does (evaluate_qa.py and
print_qa_metrics.py in xiaowu0162/LongMemEval, read at commit 9e0b455):
- the per-type criteria are in our words with the official meaning (`LME_CRITERIA`), or, with
  `judge.templates`, the user's own copy of the official templates used as written (the file's
  sha256 goes into the verdicts' provenance and the rule's params);
- a free-text reply is read by the official rule: it says yes when "yes" occurs anywhere in it,
  lowercased; anything else is a no. A reply that holds neither "yes" nor "no" is also flagged
  unparsed (`judge_unparsed`), so its share is reported, but it still counts as wrong;
- a constrained judge compares yes against no at the first reply token over every spelling the
  tokenizer has of each ("Yes", " yes", "YES", ...), so the model's own choice decides, not the
  one spelling our prompt happens to ask for.
The wiki rubric is ours: its reply is constrained to "1".."5" (or parsed strictly when free).
Beside each verdict goes the probability-weighted score (G-Eval style): the expected rubric
score, or the probability of yes.

A judge must prove it judges: `--controls` grades, for every question, the reference answer
itself (it must pass) and a known-wrong answer, another question's reference of the same
kind (it must fail). The aggregate stage turns these into the judge's control accuracy and
flags a judge that cannot tell them apart.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import logging
import os
import re
import string
import time
from pathlib import Path

from .engine import EngineSettings, add_runtime_arguments, apply_runtime, open_engine
from .io import StageError, parse_json_arg, provenance, read_jsonl, write_json, write_jsonl

log = logging.getLogger(__name__)

# The graded answer comes last, so one question's judgements share everything before it.
WIKI_PROMPT = """Grade an answer against the reference: 1 = wrong, 2 = mostly wrong, 3 = partly right, 4 = right but imprecise, 5 = fully right. Reply with one digit from 1 to 5 only.
Question: {question}
Reference answer: {reference}
Answer to grade: {prediction}"""

_LME_BASE = """You check a chat assistant's response to a question about the user's past conversations. {criterion} Reply with yes or no only.
Question: {question}
{label}: {reference}
Assistant's response: {prediction}"""

# The six question types LongMemEval reports (print_qa_metrics.py); an `_abs` question keeps its type.
LME_TYPES = ("single-session-user", "single-session-assistant", "single-session-preference", "multi-session",
             "knowledge-update", "temporal-reasoning")

# Our words, the official meaning (evaluate_qa.py's get_anscheck_prompt). What decides a verdict:
# - "contains": the correct answer anywhere in the response passes, also beside other candidates;
# - equivalence and all intermediate steps pass, a subset of the required information does not;
# - temporal reasoning keeps all of that and forgives an off-by-one count of any time unit;
# - preference: recalling and using the user's personal information correctly is enough;
# - abstention: the response must identify the question as unanswerable.
_CONTAINS = ("Say yes if the response contains the correct answer, even alongside other content. Also say yes if "
             "it is equivalent to the correct answer or contains all the intermediate steps that lead to it. Say no "
             "if it contains only a subset of the information the answer requires, and no otherwise.")
LME_CRITERIA = {
    "default": _CONTAINS,
    "temporal-reasoning": _CONTAINS + (" Do not penalise off-by-one errors in a number of days, weeks, months or "
                                       "any other unit: when the question asks how many and the response is off by "
                                       "one (say 19 days where the answer is 18), it is still correct."),
    "knowledge-update": ("Say yes if the response contains the correct answer, and no otherwise. A response that "
                         "also mentions earlier information is correct as long as its updated answer is the correct "
                         "one."),
    "single-session-preference": ("The rubric describes the personalised response the user would want. Say yes if "
                                  "the response satisfies it, and no otherwise. The response need not reflect every "
                                  "point of the rubric: it is correct as long as it recalls and uses the user's "
                                  "personal information correctly."),
    "abstention": ("This question cannot be answered from the user's history; the explanation says why. Say yes if "
                   "the response correctly identifies the question as unanswerable: it may say the information is "
                   "incomplete, or that some other information was given but not the one asked for. Otherwise say "
                   "no."),
}
# What the reference is, as the official templates name it.
LME_LABELS = {"single-session-preference": "Rubric", "abstention": "Explanation", "default": "Correct answer"}

SCORE_CHOICES = ("1", "2", "3", "4", "5")
VERDICT_CHOICES = ("yes", "no")
TEMPLATE_FIELDS = ("question", "answer", "response")

_SCORE = re.compile(r"^\s*(?:score\s*[:=]?\s*)?([1-5])\s*(?:/\s*5)?\s*\.?\s*$", re.IGNORECASE)


def is_rubric(question_type: str) -> bool:
    """Wiki answers get the 1-5 rubric; LongMemEval answers a yes/no verdict."""
    return question_type == "wiki"


def choices_for(question_type: str) -> tuple[str, ...]:
    return SCORE_CHOICES if is_rubric(question_type) else VERDICT_CHOICES


def wiki_prompt(question: str, reference: str, prediction: str) -> str:
    return WIKI_PROMPT.format(question=question, reference=reference, prediction=prediction or "(no answer)")


def criterion_key(question_type: str, abstention: bool) -> str:
    """The official template that applies: abstention first (any type), then the type's own."""
    return "abstention" if abstention else (question_type if question_type in LME_CRITERIA else "default")


def longmemeval_prompt(question_type: str, abstention: bool, question: str, reference: str, prediction: str,
                       templates: "Templates | None" = None) -> str:
    if templates is not None:
        return templates.prompt(question_type, abstention, question, reference, prediction)
    key = criterion_key(question_type, abstention)
    return _LME_BASE.format(question=question, reference=reference, prediction=prediction or "(no answer)",
                            criterion=LME_CRITERIA[key], label=LME_LABELS.get(key, LME_LABELS["default"]))


def judge_prompt(item: dict, prediction: str, templates: "Templates | None" = None) -> str:
    """`item`: a question (or answer record) with question, reference/answer, question_type, abstention."""
    reference = item.get("reference", item.get("answer"))
    if is_rubric(item["question_type"]):
        return wiki_prompt(item["question"], reference, prediction)
    return longmemeval_prompt(item["question_type"], item.get("abstention", False), item["question"], reference,
                              prediction, templates)


# ---------------------------------------------------------------- verbatim templates (judge.templates)
class Templates:
    """The user's own judge templates, used as written: {key: template with {question} {answer} {response}},
    key a question type, `abstention`, or `default` (any other type)."""

    def __init__(self, templates: dict[str, str], source: str, sha256: str):
        self.templates, self.source, self.sha256 = templates, source, sha256

    def prompt(self, question_type: str, abstention: bool, question: str, answer: str, response: str) -> str:
        key = "abstention" if abstention else question_type
        template = self.templates.get(key, self.templates.get("default") if not abstention else None)
        if template is None:
            raise StageError(f"{self.source}: no judge template for {key!r} (judge.templates)")
        # as the official script: the response as it is, even when empty
        return template.format(question=question, answer=answer, response=response or "")


def file_sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_templates(path) -> Templates:
    """An `evaluate_qa.py` (its templates read with `ast`, never executed) or a YAML/JSON mapping."""
    path = Path(path)
    if not path.is_file():
        raise StageError(f"judge.templates: {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        templates = templates_from_source(text, str(path))
    else:
        import yaml

        templates = yaml.safe_load(text)
        if not isinstance(templates, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                      for k, v in templates.items()):
            raise StageError(f"{path}: judge.templates must map question types to template strings")
    for key, template in templates.items():
        check_template(template, f"{path}: template {key!r}")
    return Templates(templates, str(path), file_sha256(path))


def check_template(template: str, where: str) -> None:
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise StageError(f"{where}: {exc}") from None
    unknown = fields - set(TEMPLATE_FIELDS)
    if unknown or not {"question", "response"} <= fields:
        raise StageError(f"{where}: placeholders must be {{question}}, {{answer}}, {{response}}; found {sorted(fields)}")


def _named(template: str, order: list[str]) -> str:
    """A positional `str.format` template ('{}' or '{0}') rewritten with named fields, same output."""
    out, auto = [], 0
    for literal, field, spec, conversion in string.Formatter().parse(template):
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is None:
            continue
        if field == "":
            index, auto = auto, auto + 1
        elif field.isdigit():
            index = int(field)
        else:
            raise ValueError(f"named field {{{field}}} in a positional template")
        out.append("{" + order[index] + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}")
    return "".join(out)


def templates_from_source(source: str, where: str, function: str = "get_anscheck_prompt") -> dict[str, str]:
    """The templates of LongMemEval's evaluate_qa.py, per question type, read from its syntax tree.

    `function(task, question, answer, response, abstention)` picks `template = "..."` in if/elif
    branches on `abstention` and on `task == '...'` / `task in [...]`, then formats it with its
    arguments; each template's positional fields are named after the arguments it is formatted with."""
    tree = ast.parse(source)
    fn = next((n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function), None)
    if fn is None:
        raise StageError(f"{where}: no function {function}() (judge.templates)")
    params = [a.arg for a in fn.args.args]
    if len(params) < 4:
        raise StageError(f"{where}: {function}() should take (task, question, answer, response, abstention)")
    task, abstention = params[0], (params[4] if len(params) > 4 else "abstention")
    roles = dict(zip(params[1:4], TEMPLATE_FIELDS))  # the signature's order: question, answer, response
    found: dict[str, str] = {}

    def condition(test):
        """('abstention', bool) or ('task', {types}) for the body of `if test:`."""
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            kind, value = condition(test.operand)
            if kind == "abstention":
                return kind, not value
        if isinstance(test, ast.Name) and test.id == abstention:
            return "abstention", True
        if (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name) and test.left.id == task
                and len(test.ops) == 1):
            right = test.comparators[0]
            if isinstance(test.ops[0], ast.Eq) and isinstance(right, ast.Constant):
                return "task", {right.value}
            if isinstance(test.ops[0], ast.In) and isinstance(right, (ast.List, ast.Tuple, ast.Set)):
                return "task", {e.value for e in right.elts if isinstance(e, ast.Constant)}
        raise StageError(f"{where}:{test.lineno}: cannot read the condition {ast.unparse(test)!r} (judge.templates)")

    def visit(body, tasks, abs_flag):
        text = None
        for node in body:
            if isinstance(node, ast.If):
                kind, value = condition(node.test)
                if kind == "abstention":
                    visit(node.body, tasks, value)
                    visit(node.orelse, tasks, not value)
                else:
                    visit(node.body, value, abs_flag)
                    visit(node.orelse, tasks, abs_flag)
            elif (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                  and node.targets[0].id == "template"):
                if not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                    raise StageError(f"{where}:{node.lineno}: a template must be a plain string (judge.templates)")
                text = node.value.value
            elif text is not None and isinstance(node, (ast.Assign, ast.Return, ast.Expr)):
                call = next((c for c in ast.walk(node) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                             and c.func.attr == "format" and isinstance(c.func.value, ast.Name)
                             and c.func.value.id == "template"), None)
                if call is None:
                    continue
                order = [roles.get(a.id) if isinstance(a, ast.Name) else None for a in call.args]
                if None in order:
                    raise StageError(f"{where}:{node.lineno}: template.format() takes other than "
                                     f"{list(roles)} (judge.templates)")
                keys = ["abstention"] if abs_flag else sorted(tasks) if tasks else ["default"]
                for key in keys:
                    found[key] = _named(text, order)
                text = None

    visit(fn.body, None, False)
    if not found:
        raise StageError(f"{where}: no templates found in {function}() (judge.templates)")
    return found


# ---------------------------------------------------------------- reading replies
def parse_score(reply: str) -> int | None:
    """A 1-5 score, or None when the reply is not exactly one."""
    match = _SCORE.match(reply or "")
    return int(match.group(1)) if match else None


def official_verdict(reply: str | None) -> int:
    """LongMemEval's rule (evaluate_qa.py): yes when "yes" occurs anywhere in the lowercased reply, else no."""
    return int("yes" in (reply or "").lower())


_NO = re.compile(r"\bno\b")


def verdict_unparsed(reply: str | None) -> bool:
    """A reply holding neither "yes" nor the word "no": the official rule reads it as no, and we count how often
    that happens (an empty reply, "I cannot tell", a digit)."""
    text = (reply or "").lower()
    return "yes" not in text and not _NO.search(text)


def parse_verdict(reply: str) -> int | None:
    """The official reading of a free-text verdict; None only when the reply holds neither yes nor no."""
    return None if verdict_unparsed(reply) else official_verdict(reply)


def verdict_fields(question_type: str, choice: str | None, probs: dict[str, float] | None) -> dict:
    """The verdict (argmax, or the official reading of free text) and the probability-weighted score.

    wiki: judge_score 1-5 (None = unparsed) and judge_expected = sum p(s)·s; LongMemEval: judge_correct 0/1,
    always set (an unparsed reply counts as wrong, as the official script does), and judge_p_yes = p(yes).
    judge_unparsed: no readable verdict came back. Unconstrained replies have no probabilities."""
    if is_rubric(question_type):
        score = parse_score(choice) if choice is not None else None
        expected = sum(int(c) * p for c, p in probs.items()) if probs else None
        return {"judge_score": score, "judge_expected": expected, "judge_unparsed": score is None}
    return {"judge_correct": official_verdict(choice), "judge_p_yes": probs.get("yes") if probs else None,
            "judge_unparsed": verdict_unparsed(choice)}


def judge_items(judge, items: list[tuple[dict, str]], constrained: bool, max_tokens: int,
                templates: Templates | None = None) -> list[dict]:
    """Grade (question-like item, answer) pairs; one verdict record each, in order."""
    conversations = [[{"role": "user", "content": judge_prompt(item, answer, templates)}] for item, answer in items]
    out: list[dict | None] = [None] * len(items)
    for choices in (SCORE_CHOICES, VERDICT_CHOICES):
        idx = [i for i, (item, _) in enumerate(items) if choices_for(item["question_type"]) == choices]
        if not idx:
            continue
        if constrained:
            # one question's judgements share the prompt up to the graded answer: grouped, it is computed once;
            # a verdict is yes against no over every spelling of each (the model's choice, not our spelling)
            probs = judge.choose([conversations[i] for i in idx], list(choices),
                                 groups=[items[i][0]["question_id"] for i in idx],
                                 spellings=choices == VERDICT_CHOICES)
            for i, p in zip(idx, probs):
                choice = max(p, key=p.get) if p else None  # {}: an endpoint that did not keep to the choices
                out[i] = {"judge_reply": choice, "judge_probs": p or None,
                          **verdict_fields(items[i][0]["question_type"], choice, p or None)}
        else:
            replies = judge.generate([conversations[i] for i in idx], max_tokens=max_tokens)
            for i, reply in zip(idx, replies):
                out[i] = {"judge_reply": reply.text, "judge_probs": None,
                          **verdict_fields(items[i][0]["question_type"], reply.text, None)}
    return out


def strip_prefix(name: str) -> str:
    from .endpoint import PREFIX

    return name[len(PREFIX):] if name.startswith(PREFIX) else name


def is_self_judge(judge_model: str, base_models: list[str]) -> bool:
    """The judge is the model under test: `base`, or the base model's own id or directory (also behind an
    endpoint: `openai:Qwen/Qwen3-8B` serving the base model grades itself just the same)."""
    if judge_model == "base":
        return True
    name = strip_prefix(judge_model).rstrip("/")
    for base in base_models:
        if not base:
            continue
        base = base.rstrip("/")
        if name == base or (os.path.exists(name) and os.path.exists(base) and os.path.samefile(name, base)):
            return True
    return False


def judge_identity(settings: dict, base_models: list[str], templates: Templates | None) -> dict:
    """Which judge graded, for provenance, summary.json and the report."""
    return {"model": settings["model"], "self_judge": is_self_judge(settings["model"], base_models),
            "templates_sha256": templates.sha256 if templates else None,
            "criteria": "verbatim templates" if templates else "lorapress wording, official meaning"}


def open_judge(settings: dict, *, key_env: str, backend: str, engine_settings: EngineSettings, threads: int):
    """`base` or a model: an engine (the evaluation backend); `openai:NAME`: an endpoint whose key is read
    from the environment variable `key_env`."""
    from .endpoint import PREFIX, EndpointJudge

    name = settings["model"]
    if name.startswith(PREFIX):
        return EndpointJudge(name, settings["base_url"], key_env, seed=engine_settings.seed)
    if name != "base":
        from dataclasses import replace

        engine_settings = replace(engine_settings, model=name)
    return open_engine(backend, engine_settings, threads=threads)


def answer_verdicts(records: list[dict], judge, settings: dict, templates: Templates | None = None) -> list[dict]:
    """Verdicts on every dataset answer of an answers chunk (control answers are not judged)."""
    answers = [r for r in records if r["question_set"] == "dataset"]
    verdicts = judge_items(judge, [(r, r["prediction"]) for r in answers], settings["constrained"],
                           settings["max_tokens"], templates)
    return [{"run_id": r["run_id"], "question_id": r["question_id"], **v} for r, v in zip(answers, verdicts)]


def control_verdicts(questions: list[dict], judge, settings: dict, templates: Templates | None = None) -> list[dict]:
    """The reference itself (must pass) and a known-wrong answer (must fail), per question."""
    items = [(q, q["answer"], "reference") for q in questions]
    items += [(q, q["distractor"], "wrong") for q in questions if q.get("distractor")]
    verdicts = judge_items(judge, [(q, a) for q, a, _ in items], settings["constrained"], settings["max_tokens"],
                           templates)
    return [{"question_id": q["question_id"], "question_type": q["question_type"], "control": kind, "answer": a, **v}
            for (q, a, kind), v in zip(items, verdicts)]


# ---------------------------------------------------------------- command line
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="lorapress judge")
    parser.description = "grade a chunk's answers (or, with --controls, the judge's known-answer controls)"
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--answers", help="an answers chunk (JSON lines) from `lorapress evaluate`")
    source.add_argument("--controls", help="qa.jsonl: grade each reference and a known-wrong answer instead")
    parser.add_argument("--judge", type=parse_json_arg, required=True,
                        help="config `judge` as JSON, without api_key_env")
    parser.add_argument("--key-env", default="OPENAI_API_KEY",
                        help="environment variable holding an endpoint judge's API key (judge.api_key_env)")
    parser.add_argument("--model", required=True, help="the base model (used when judge.model is `base`)")
    parser.add_argument("--base-id", default=None,
                        help="config model.base as written (a judge with this id is the model under test too)")
    parser.add_argument("--engine", type=parse_json_arg, required=True,
                        help="engine params as JSON: {dtype, backend, model_config, generation}")
    add_runtime_arguments(parser)
    parser.add_argument("--out", required=True, help="verdicts (JSON lines)")
    parser.add_argument("--meta", required=True, help="provenance (JSON)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    apply_runtime(args)
    templates = None
    if args.judge.get("templates"):
        templates = load_templates(args.judge["templates"])
        expected = args.judge.get("templates_sha256")
        if expected and expected != templates.sha256:  # edited between planning and running: re-plan
            raise StageError(f"{templates.source}: sha256 {templates.sha256} differs from the planned {expected} "
                             "(judge.templates changed during the run)")
    identity = judge_identity(args.judge, [args.model, args.base_id], templates)
    if identity["self_judge"]:
        log.warning("judge: %s is the model under test (self-judge); cite no number beside the published ones",
                    args.judge["model"])
    engine_settings = EngineSettings.from_engine(args.model, args.engine)
    judge = open_judge(args.judge, key_env=args.key_env, backend=args.engine["backend"],
                       engine_settings=engine_settings, threads=args.threads)
    started = time.perf_counter()
    if args.controls:
        verdicts = control_verdicts(read_jsonl(args.controls), judge, args.judge, templates)
    else:
        verdicts = answer_verdicts(read_jsonl(args.answers), judge, args.judge, templates)
    judge.close()
    seconds = round(time.perf_counter() - started, 1)
    log.info("%d verdicts in %.1f s", len(verdicts), seconds)
    write_json(args.meta, provenance("judge", args.judge, backend=args.engine["backend"], dtype=args.engine["dtype"],
                                     n_verdicts=len(verdicts), seconds=seconds, judge=identity,
                                     n_unparsed=sum(bool(v.get("judge_unparsed")) for v in verdicts)))
    write_jsonl(args.out, verdicts)
