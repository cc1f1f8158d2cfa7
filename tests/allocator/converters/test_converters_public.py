"""The converters on the real public logs in ``../shared/data/public-logs``: row-by-row
agreement with the curator's flat MoT table, and the summary statistics the public-logs
README reports for all four sets. Skipped where the folder is absent."""

from __future__ import annotations

from math import comb
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pytest

from allocator.converters import CONVERTERS, convert
from allocator.errors import ParameterError
from allocator.logs import AttemptLog, summarize

# Tests marked slow share a module fixture that converts a whole public set (2-5 s).
pytestmark = pytest.mark.public_logs

GPT35_CONFIGS = ["cot1", "cot1_40", "cot1_t=0.4", "cot1_t=0.8", "cot2", "cot2_t=0.4",
                 "cot2_t=0.8", "pot1", "pot1_t=0.4", "pot1_t=0.8", "pot2", "pot2_t=0.4",
                 "pot2_t=0.8"]


def _answers(log: AttemptLog) -> np.ndarray:
    return np.array([log.answers[a] if a >= 0 else None for a in log.answer], dtype=object)


def _pooled(log: AttemptLog, arms: list[str], task: str | None = None):
    """Summary of the given arms pooled (the single arm's when there is one)."""
    part = log.select_arms(arms)
    if task is not None:
        part = part.select_queries(np.flatnonzero(part.queries.metadata["task"] == task))
    summary = summarize(part)
    return summary["(all arms)" if len(arms) > 1 else arms[0]]


def _shared_by_all_arms(log: AttemptLog) -> AttemptLog:
    present = [len(np.unique(log.arm[log.pool(q)])) for q in range(log.n_queries)]
    shared = np.flatnonzero(np.array(present) == len(np.unique(log.arm)))
    np.testing.assert_array_equal(log.common_queries(), shared)
    return log.select_queries(shared)


# ------------------------------------------------------------------ MoT cascade
@pytest.fixture(scope="module")
def mot(public_logs: Path) -> AttemptLog:
    log, rejected = convert(public_logs / "mot_cascade" / "raw", "mot-cascade")
    assert len(rejected) == 0
    return log


@pytest.fixture(scope="module")
def mot_csv(public_logs: Path) -> pa.Table:
    options = pa_csv.ConvertOptions(column_types={
        name: pa.string() for name in ("task", "query_id", "question", "gold", "model", "config",
                                       "sample_idx", "answer", "is_correct", "gen_chars")},
        strings_can_be_null=False)
    return pa_csv.read_csv(public_logs / "mot_cascade" / "samples.csv.gz",
                           parse_options=pa_csv.ParseOptions(newlines_in_values=True),
                           convert_options=options)


@pytest.mark.slow
def test_mot_reproduces_the_curated_table_row_by_row(mot: AttemptLog, mot_csv: pa.Table) -> None:
    csv = mot_csv
    csv_ids = pc.binary_join_element_wise(
        csv["model"], "/", csv["task"], "_", csv["config"], "/", csv["query_id"], "/",
        csv["sample_idx"], "")
    ours = pa.array(mot.attempt_id.tolist(), pa.string())
    position = pc.index_in(csv_ids, ours)
    assert position.null_count == 0, "csv rows without a converted attempt"
    assert mot.n_attempts == csv.num_rows == 255_841  # a bijection
    rows = position.to_numpy(zero_copy_only=False).astype(np.int64)
    assert len(np.unique(rows)) == csv.num_rows

    answer = np.where(_answers(mot)[rows] == None, "", _answers(mot)[rows])  # noqa: E711
    checks = {
        "answer": answer != csv["answer"].to_numpy(zero_copy_only=False),
        "is_correct": mot.correct[rows].astype(int).astype(str)
        != csv["is_correct"].to_numpy(zero_copy_only=False),
        "gen_chars": mot.cost[rows].astype(int).astype(str)
        != csv["gen_chars"].to_numpy(zero_copy_only=False),
    }
    groups = pc.binary_join_element_wise(csv["task"], csv["model"], csv["config"], " ")
    groups = groups.to_numpy(zero_copy_only=False)
    for name, wrong in checks.items():
        where = dict(zip(*np.unique(groups[wrong], return_counts=True), strict=True))
        assert not wrong.any(), f"{name} disagrees on {int(wrong.sum())} rows: {where}"


@pytest.mark.slow
def test_mot_questions_and_gold_match_the_curated_table(
    mot: AttemptLog, mot_csv: pa.Table
) -> None:
    ids = pc.binary_join_element_wise(mot_csv["task"], mot_csv["query_id"], "/")
    position = pc.index_in(ids, pa.array(mot.query_ids.tolist(), pa.string()))
    rows = position.to_numpy(zero_copy_only=False).astype(np.int64)
    # the curator cut questions at 300 characters
    ours = np.array([text[:300] for text in mot.queries.text], dtype=object)[rows]
    assert (ours == mot_csv["question"].to_numpy(zero_copy_only=False)).all()
    gold = mot.queries.metadata["gold"][rows]
    assert (gold == mot_csv["gold"].to_numpy(zero_copy_only=False)).all()


MOT_README = {
    # id: task, arms, queries, samples per query, per-sample accuracy, majority, any correct
    "date-gpt35-cot1_40": ("date", ["gpt-3.5-turbo/cot1_40"], 369, 40, 0.737, 0.768, 0.883),
    "date-gpt35-pooled": ("date", [f"gpt-3.5-turbo/{c}" for c in GPT35_CONFIGS], 369, 280,
                          0.724, 0.808, 0.938),
    "date-llama-cot1": ("date", ["llama-2-13b/cot1"], 369, 20, 0.515, 0.626, None),
    "gsm-gpt4-4configs": ("gsm", ["gpt-4/cot1", "gpt-4/cot2", "gpt-4/pot1", "gpt-4/pot2"], 1319,
                          12, 0.948, 0.964, 0.983),
}
#: Where the README's rounding is looser than half a unit of its last digit.
MOT_TOLERANCE = {
    # .94747 is printed .948 (rounded twice: .9475 -> .948)
    ("gsm-gpt4-4configs", "accuracy"): 0.0008,
    # .96336 here, with fractional credit for tied votes; first-seen tie-breaking gives
    # .9636, which the README prints
    ("gsm-gpt4-4configs", "majority"): 0.001,
    # .6238 here. The README's .626 lies between tie rules: fractional credit for tied
    # votes (the project's rule) gives .6238, first-seen tie-breaking .6287; the gap is
    # 0.8 of one query out of 369.
    ("date-llama-cot1", "majority"): 0.003,
}


@pytest.mark.slow
@pytest.mark.parametrize("case", MOT_README)
def test_mot_summaries_match_the_readme(mot: AttemptLog, case: str) -> None:
    task, arms, queries, per_query, accuracy, majority, anyc = MOT_README[case]
    summary = _pooled(mot, arms, task)
    assert summary.queries == queries
    # GSM8K GPT-4: a few generations are missing, 11.97 samples per query on average
    assert summary.attempts_per_query == pytest.approx(per_query, abs=0.05)
    for name, ours, theirs in (("accuracy", summary.attempt_accuracy, accuracy),
                               ("majority", summary.majority_accuracy, majority),
                               ("any", summary.any_correct, anyc)):
        if theirs is not None:
            tolerance = MOT_TOLERANCE.get((case, name), 0.0005)
            assert ours == pytest.approx(theirs, abs=tolerance), name


@pytest.mark.slow
def test_mot_llama_gsm8k_matches_the_readme(mot: AttemptLog) -> None:
    pot1 = _pooled(mot, ["llama-2-13b/pot1"], "gsm")
    pot2 = _pooled(mot, ["llama-2-13b/pot2"], "gsm")
    pooled = _pooled(mot, ["llama-2-13b/pot1", "llama-2-13b/pot2"], "gsm")
    assert pot1.queries == pot2.queries == 398
    assert 21 < pot1.attempts_per_query < 23 and 21 < pot2.attempts_per_query < 23
    assert pot1.attempt_accuracy == pytest.approx(0.30, abs=0.005)
    assert pot2.attempt_accuracy == pytest.approx(0.35, abs=0.005)
    assert pooled.majority_accuracy == pytest.approx(0.45, abs=0.005)
    assert pooled.any_correct == pytest.approx(0.74, abs=0.005)
    # two queries have attempts under one prompt only, so the pool holds 400
    assert pooled.queries == 400


@pytest.mark.slow
def test_mot_same_question_is_one_query_across_models(mot: AttemptLog) -> None:
    date = mot.select_queries(np.flatnonzero(mot.queries.metadata["task"] == "date"))
    models = {arm.split("/")[0] for arm in date.arms if np.any(date.arm == date.arms.index(arm))}
    assert date.n_queries == 369
    assert models == {"gpt-3.5-turbo", "gpt-4", "llama-2-13b"}


def test_mot_source_can_be_a_model_folder_or_one_file_and_filters_work(public_logs) -> None:
    raw = public_logs / "mot_cascade" / "raw"
    one, _ = convert(raw / "llama2_13B_result" / "date_cot1.json.gz", "mot-cascade")
    assert (one.n_queries, one.n_attempts, one.arms) == (369, 369 * 20, ("llama-2-13b/cot1",))
    folder, _ = convert(raw / "llama2_13B_result", "mot-cascade", tasks="date",
                        configs=["cot1", "cot2"])
    assert folder.arms == ("llama-2-13b/cot1", "llama-2-13b/cot2")
    filtered, _ = convert(raw, "mot-cascade", models="llama-2-13b", tasks="date")
    assert filtered.n_attempts == sum(
        convert(raw / "llama2_13B_result" / f"date_{c}.json.gz", "mot-cascade")[0].n_attempts
        for c in ("cot1", "cot2", "pot1", "pot2"))
    with pytest.raises(ParameterError, match=r"'tasks'.*'gsm'"):
        convert(raw, "mot-cascade", tasks="gsm8k")


# ---------------------------------------------------------------- reasoning-gym
@pytest.fixture(scope="module")
def gym(public_logs: Path) -> AttemptLog:
    log, rejected = convert(public_logs / "reasoning_gym" / "samples.jsonl.gz", "reasoning-gym")
    assert len(rejected) == 0
    return log


@pytest.mark.slow
def test_reasoning_gym_converts_every_row(gym) -> None:
    log = gym
    assert log.n_attempts == 191_050
    assert set(log.queries.metadata["difficulty"]) == {"easy", "hard"}
    assert np.array_equal(log.correct, (log.extra["task_score"] >= 0.99).astype(np.float32))


@pytest.mark.slow
def test_reasoning_gym_easy_matches_the_readme(gym) -> None:
    log = gym
    easy = log.select_queries(np.flatnonzero(log.queries.metadata["difficulty"] == "easy"))
    shared = _shared_by_all_arms(easy)
    assert len(np.unique(easy.arm)) == 10
    assert 4_400 <= shared.n_queries <= 4_600  # "about 4,500 questions shared by all 10"
    summary = summarize(shared)
    assert summary["(all arms)"].any_correct == pytest.approx(0.93, abs=0.005)
    assert summary["openai_o3-mini"].attempt_accuracy == pytest.approx(0.81, abs=0.005)
    best = max((s.attempt_accuracy, arm) for arm, s in summary.items() if arm != "(all arms)")
    assert best[1] == "openai_o3-mini"
    scout = summary["meta-llama_llama-4-scout"]
    assert scout.attempts_per_query == 1 and summary["openai_o3-mini"].attempts_per_query == 3
    # The README's pooled majority (.72) counts a missing answer as one more answer that
    # can win the vote; under the project's rule (no answer never votes) it is higher.
    table = log_table_with_votes_for_missing(shared)
    readme_rule = summarize(table)["(all arms)"].majority_accuracy
    assert readme_rule == pytest.approx(0.72, abs=0.01)
    assert summary["(all arms)"].majority_accuracy > readme_rule


def log_table_with_votes_for_missing(log: AttemptLog) -> AttemptLog:
    """The same log where attempts without an answer vote for one shared empty answer."""
    answers = np.where(log.answer >= 0, _answers(log), "")
    table = pa.table({
        "query_id": pa.array(log.query_ids[log.attempt_query].tolist()),
        "arm": pa.array(np.asarray(log.arms, dtype=object)[log.arm].tolist()),
        "answer": pa.array(answers.tolist(), pa.string()),
        "correct": pa.array(log.correct),
    })
    return AttemptLog.from_arrow(table)[0]


@pytest.mark.slow
def test_reasoning_gym_hard_matches_the_readme(gym) -> None:
    log = gym
    hard = log.select_queries(np.flatnonzero(log.queries.metadata["difficulty"] == "hard"))
    shared = _shared_by_all_arms(hard)
    assert 4_700 <= shared.n_queries <= 4_900  # "about 4,800 questions x 10 models x 1"
    assert np.all(np.diff(shared.offsets) == 10)


@pytest.mark.slow
def test_reasoning_gym_keys_naming_different_questions_are_split(gym) -> None:
    log = gym
    base = np.array([q.split("~")[0] for q in log.query_ids], dtype=object)
    split = np.array(["~" in q for q in log.query_ids])
    assert split.any()
    # every split key really holds several distinct question texts
    for key in np.unique(base[split])[:50]:
        texts = set(log.queries.text[base == key])
        assert len(texts) == int((base == key).sum()) > 1


# ------------------------------------------------------------------------ CodeT
def _pass_at_k(n: np.ndarray, c: np.ndarray, k: int) -> float:
    return float(np.mean([1 - comb(int(a - b), k) / comb(int(a), k)
                          for a, b in zip(n, c, strict=True)]))


def test_codet_matches_the_readme(public_logs: Path) -> None:
    log, rejected = convert(public_logs / "codet_humaneval", "codet")
    assert len(rejected) == 0
    assert (log.n_queries, log.n_attempts, log.arms) == (164, 16_400, ("codegen-16b",))
    summary = summarize(log)["codegen-16b"]
    assert summary.attempt_accuracy == pytest.approx(0.221, abs=0.0005)
    assert summary.never == 43
    n = np.diff(log.offsets)
    c = np.bincount(log.attempt_query, weights=log.correct, minlength=log.n_queries)
    assert _pass_at_k(n, c, 1) == pytest.approx(0.221, abs=0.0005)
    assert _pass_at_k(n, c, 10) == pytest.approx(0.50, abs=0.005)
    assert _pass_at_k(n, c, 100) == pytest.approx(0.74, abs=0.005)
    for text, entry in zip(log.queries.text, log.queries.metadata["entry_point"], strict=True):
        assert f"def {entry}(" in text


def test_codet_single_samples_file_finds_its_problems(public_logs: Path) -> None:
    log, _ = convert(public_logs / "codet_humaneval" / "samples.jsonl.gz", "codet",
                     model="cg16")
    assert log.arms == ("cg16",) and all(t is not None for t in log.queries.text)


# ---------------------------------------------------------------- SWE-bench Pro
def test_swe_bench_pro_matches_the_readme(public_logs: Path) -> None:
    log, rejected = convert(public_logs / "swe_bench_pro", "swe-bench-pro")
    assert len(rejected) == 0
    assert (log.n_queries, log.n_attempts, len(log.arms)) == (730, 9_729, 14)
    summary = summarize(log)
    rates = {arm: s.attempt_accuracy for arm, s in summary.items() if arm != "(all arms)"}
    assert min(rates, key=rates.get).startswith("GPT-4o")
    assert max(rates, key=rates.get).startswith("Claude 4.5 Sonnet")
    assert min(rates.values()) == pytest.approx(0.06, abs=0.005)
    assert max(rates.values()) == pytest.approx(0.44, abs=0.005)
    assert summary["(all arms)"].any_correct == pytest.approx(0.66, abs=0.005)
    # one run per instance and configuration; every run's answer is its own
    assert all(s.attempts_per_query == 1 for arm, s in summary.items() if arm != "(all arms)")
    assert len(log.answers) == log.n_attempts
    repos = log.queries.metadata["repo"]
    assert all(r is not None and r.split("/")[1] in q
               for r, q in zip(repos, log.query_ids, strict=True))


def test_swe_bench_pro_reruns_can_be_merged_into_one_arm(public_logs: Path) -> None:
    separate, _ = convert(public_logs / "swe_bench_pro", "swe-bench-pro")
    merged, _ = convert(public_logs / "swe_bench_pro", "swe-bench-pro", merge_reruns=True)
    assert len(merged.arms) == 12
    assert merged.fingerprint() != separate.fingerprint()
    summary = summarize(merged)
    reruns = {
        "Claude Sonnet 4": ("Claude Sonnet 4 - paper", "Claude 4 Sonnet - 10132025"),
        "Gemini 2.5 Pro Preview": ("Gemini 2.5 Pro Preview - paper",
                                   "Gemini 2.5 Pro Preview -- debug-oct22"),
    }
    for model, runs in reruns.items():
        parts = [summarize(separate)[run] for run in runs]
        assert summary[model].attempts == sum(p.attempts for p in parts)
        assert summary[model].attempt_accuracy == pytest.approx(
            sum(p.attempt_accuracy * p.attempts for p in parts) / summary[model].attempts)
        assert max(np.bincount(merged.attempt_query[merged.arm == merged.arms.index(model)])) == 2
    assert summary["(all arms)"].any_correct == pytest.approx(0.66, abs=0.005)


def test_every_public_set_has_a_registered_converter() -> None:
    assert {"mot-cascade", "reasoning-gym", "codet", "swe-bench-pro"} <= set(CONVERTERS)
