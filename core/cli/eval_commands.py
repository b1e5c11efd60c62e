"""`oppu eval`: measure the personal adapter on your own held-out writing."""

from oppu.core.cli import CommandError, open_profile
from oppu.core.cli.progress_bar import ProgressBar

LABELS = {"base": "base model", "base+retrieval": "base + retrieval",
          "adapter": "your adapter", "adapter+retrieval": "adapter + retrieval"}


def register(commands) -> None:
    evaluate = commands.add_parser(
        "eval", help="measure how well your adapter predicts your held-out writing")
    evaluate.add_argument("--version", help="adapter version (default: the active one)")
    evaluate.add_argument("--generations", type=int, default=None, metavar="N",
                          help="continuations to generate and score per configuration "
                               "(default 4; 0 skips generation)")
    evaluate.add_argument("--max-words", type=int, default=None, metavar="N",
                          help="measure at most this much held-out writing: whole documents, "
                               "the oldest first, or the opening of the first if it is "
                               "longer (default 20000)")
    evaluate.add_argument("--show", action="store_true",
                          help="print the stored result of the last evaluation, measure nothing")
    evaluate.set_defaults(run=run_eval)


def run_eval(args) -> int:
    from oppu.core.evaluation import (
        DEFAULT_GENERATIONS,
        DEFAULT_MAX_WORDS,
        EvaluationError,
        evaluate_profile,
        stored_evaluation,
    )
    from oppu.core.progress import Stopped

    if args.generations is not None and args.generations < 0:
        raise CommandError("--generations must be 0 or more")
    if args.max_words is not None and args.max_words < 1:
        raise CommandError("--max-words must be at least 1")
    with open_profile(args) as profile:
        try:
            if args.show:
                result = stored_evaluation(profile, args.version)
                if result is None:
                    raise CommandError("not evaluated yet: run `oppu eval`")
            else:
                generations = DEFAULT_GENERATIONS if args.generations is None else args.generations
                result = evaluate_profile(profile, args.version, generations, ProgressBar(),
                                          max_words=args.max_words or DEFAULT_MAX_WORDS)
        except (EvaluationError, Stopped) as error:
            raise CommandError(str(error)) from None
    print(format_evaluation(result))
    return 0


def format_evaluation(result) -> str:
    lines = [(f"adapter {result.version}: {result.heldout_tokens} held-out tokens in "
              f"{result.heldout_documents} document{'s' * (result.heldout_documents != 1)} "
              "it never trained on"),
             f"  {'configuration':<22} {'perplexity':>10} {'lower':>8}"
             + (f" {'ROUGE-L':>8} {'style':>6}" if result.generation else "")]
    base = result.perplexity["base"]
    for key, label in LABELS.items():
        ppl = result.perplexity[key]
        line = f"  {label:<22} {ppl:>10.2f} {1 - ppl / base:>+8.1%}"
        if key in result.generation:
            scores = result.generation[key]
            line += f" {scores['rouge_l']:>8.3f} {scores['style']:>6.3f}"
        lines.append(line)
    lines.append(f"adapter + retrieval: {result.reduction_vs_base:.1%} lower perplexity than the "
                 f"base model, {result.reduction_vs_retrieval:.1%} lower than retrieval alone")
    if result.retrieval_note:
        lines.append(f"note: {result.retrieval_note}")
    return "\n".join(lines)
