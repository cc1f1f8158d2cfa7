"""Format-specific behaviour of the lm-eval and OpenAI converters, on the hand-made
examples in ``data/examples/`` and small variants of them written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from allocator.converters import convert
from allocator.errors import ConverterError, ParameterError
from allocator.logs import summarize

EXAMPLES = Path(__file__).resolve().parents[3] / "data" / "examples"
OPENAI = EXAMPLES / "openai" / "chat_completions.jsonl"
LM_EVAL = EXAMPLES / "lm_eval"


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _line_of(attempt_id: str) -> int:
    return int(attempt_id.split(":")[-1].split("#")[0])


def _answers(log) -> list[str | None]:
    return [log.answers[a] if a >= 0 else None for a in log.answer]


def _completion(record: dict) -> dict:
    response = record.get("response", record)
    return response.get("body", response)


# --------------------------------------------------------------------- openai
def test_openai_example_grades_every_choice() -> None:
    log, rejected = convert(OPENAI, "openai")
    assert len(rejected) == 0
    assert (log.n_queries, log.n_attempts, log.arms) == (3, 7, ("gpt-4o-mini/t=0.7",))
    assert _answers(log) == ["14", "14", "5", "10", "2.5", "84", "60"]
    assert log.correct.tolist() == [1, 1, 0, 1, 0, 1, 0]
    assert log.extra["finish_reason"].tolist()[4] == "length"


def test_openai_token_costs_add_up_to_the_billed_usage() -> None:
    log, _ = convert(OPENAI, "openai")
    lines = np.array([_line_of(a) for a in log.attempt_id])
    for line, record in enumerate(_records(OPENAI), start=1):
        completion = _completion(record)
        assert log.cost[lines == line].sum() == pytest.approx(
            completion["usage"]["completion_tokens"])
        counts = [len((c.get("logprobs") or {}).get("content") or [])
                  for c in completion["choices"]]
        if all(counts):  # split in proportion to the per-choice token counts
            share = np.array(counts) / sum(counts)
            assert log.cost[lines == line] == pytest.approx(
                share * completion["usage"]["completion_tokens"])
        else:  # evenly
            assert len(set(log.cost[lines == line].tolist())) == 1


def test_openai_score_is_the_mean_token_logprob() -> None:
    log, _ = convert(OPENAI, "openai")
    first = _completion(_records(OPENAI)[0])
    expected = [np.mean([t["logprob"] for t in c["logprobs"]["content"]])
                for c in first["choices"]]
    assert log.score[:3] == pytest.approx(expected, abs=1e-6)
    assert np.isnan(log.score[3:]).all()


def test_openai_char_costs_and_arm_option() -> None:
    log, _ = convert(OPENAI, "openai", cost="chars", arm="mini")
    contents = [c["message"]["content"] for r in _records(OPENAI)
                for c in _completion(r)["choices"]]
    assert log.cost.tolist() == [float(len(c)) for c in contents]
    assert log.arms == ("mini",)
    with pytest.raises(ParameterError, match="'cost'"):
        convert(OPENAI, "openai", cost="dollars")


def test_openai_json_array_gives_the_same_log(tmp_path: Path) -> None:
    path = tmp_path / "completions.json"
    path.write_text(json.dumps(_records(OPENAI), indent=2))
    as_array, _ = convert(path, "openai")
    as_lines, _ = convert(OPENAI, "openai")
    assert as_array.fingerprint() == as_lines.fingerprint()


def test_openai_arm_defaults_to_the_model(tmp_path: Path) -> None:
    record = _records(OPENAI)[0]
    del record["arm"]
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(record) + "\n")
    log, _ = convert(path, "openai")
    assert log.arms == (record["response"]["model"],)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("target"), "no gold answer"),
        (lambda r: r.pop("query_id"), "no query id"),
        (lambda r: r["response"].pop("usage"), "no usage"),
        (lambda r: r["response"].update(choices=[]), "no choices"),
        (lambda r: r.update(response={"status_code": 429, "body": {}}), "status 429"),
        (lambda r: r.update(target="  "), "blank"),
    ],
)
def test_openai_unusable_records_name_the_problem(tmp_path: Path, change, message: str) -> None:
    records = _records(OPENAI)
    records[1]["response"]["choices"][0]["logprobs"] = None
    change(records[1])
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    with pytest.raises(ConverterError, match=message) as caught:
        convert(path, "openai")
    assert caught.value.line == 2
    log, rejected = convert(path, "openai", skip_invalid=True)
    assert rejected.rows.column("_line").to_pylist() == [2]
    assert log.n_attempts == 7 - 2


def test_openai_logprobs_count_tokens_without_usage(tmp_path: Path) -> None:
    record = _records(OPENAI)[0]
    del record["response"]["usage"]
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(record) + "\n")
    log, _ = convert(path, "openai")
    assert log.cost.tolist() == [
        len(c["logprobs"]["content"]) for c in record["response"]["choices"]]


# --------------------------------------------------------------------- lm-eval
def test_lm_eval_example_has_one_arm_per_model_and_filter() -> None:
    log, rejected = convert(LM_EVAL, "lm-eval")
    assert len(rejected) == 0
    assert set(log.arms) == {f"tiny-llm/{f}" for f in (
        "score-first", "maj@4", "per-sample", "strict-match", "flexible-extract", "none")}
    tasks = log.queries.metadata["task"]
    assert sorted(set(tasks)) == ["arc_easy", "gsm8k", "gsm8k_cot_self_consistency"]
    assert all(qid.startswith(f"{task}/") for qid, task in zip(log.query_ids, tasks, strict=True))


def test_lm_eval_repeats_become_samples_and_cost_is_response_length() -> None:
    log, _ = convert(LM_EVAL, "lm-eval", filter="maj@4")
    path = next(LM_EVAL.rglob("samples_gsm8k_cot_self_consistency_*.jsonl"))
    records = [r for r in _records(path) if r["filter"] == "maj@4"]
    assert log.n_attempts == sum(len(r["resps"][0]) for r in records)
    assert log.cost.tolist() == [float(len(x)) for r in records for x in r["resps"][0]]
    assert set(log.extra["answer_source"]) == {"extracted"}


def test_lm_eval_extraction_agrees_with_a_per_response_filter() -> None:
    log, _ = convert(LM_EVAL, "lm-eval", filter=["score-first", "per-sample"])
    by_arm = {arm: log.select_arms([arm]) for arm in log.arms}
    extracted, filtered = by_arm["tiny-llm/score-first"], by_arm["tiny-llm/per-sample"]
    assert set(filtered.extra["answer_source"]) == {"filter"}
    assert _answers(extracted) == _answers(filtered)
    assert extracted.correct.tolist() == filtered.correct.tolist()
    # the gold is read after '####' in the worked solution: some samples are right
    assert 0 < extracted.correct.mean() < 1


def test_lm_eval_single_response_uses_the_harness_metric_unless_compare(tmp_path: Path) -> None:
    path = next(LM_EVAL.rglob("samples_gsm8k_2026*.jsonl"))
    records = _records(path)
    records[0]["exact_match"] = 0.0  # say the harness was stricter than our comparison
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / path.name).write_text("".join(json.dumps(r) + "\n" for r in records))
    auto, _ = convert(folder, "lm-eval")
    compare, _ = convert(folder, "lm-eval", grading="compare")
    expected = [r["exact_match"] for r in records]
    assert auto.correct.tolist() == expected
    assert compare.correct[0] == 1.0 and compare.correct[1:].tolist() == expected[1:]
    with pytest.raises(ParameterError, match="'grading'"):
        convert(folder, "lm-eval", grading="vibes")


def test_lm_eval_multiple_choice_picks_the_highest_loglikelihood() -> None:
    log, _ = convert(LM_EVAL, "lm-eval", filter="none")
    path = next(LM_EVAL.rglob("samples_arc_easy_*.jsonl"))
    records = _records(path)
    best = [str(int(np.argmax([float(v[0]) for v in r["filtered_resps"]]))) for r in records]
    assert _answers(log) == best
    assert log.correct.tolist() == [r["acc"] for r in records]
    by_target = [float(b == str(r["target"])) for b, r in zip(best, records, strict=True)]
    assert log.correct.tolist() == by_target


def test_lm_eval_filter_and_model_options(tmp_path: Path) -> None:
    log, _ = convert(LM_EVAL, "lm-eval", filter="strict-match", model="other")
    assert log.arms == ("other/strict-match",)
    with pytest.raises(ParameterError, match="strict-match"):
        convert(LM_EVAL, "lm-eval", filter="no-such-filter")


def test_lm_eval_single_file_and_summary() -> None:
    path = next(LM_EVAL.rglob("samples_gsm8k_2026*.jsonl"))
    log, _ = convert(path, "lm-eval", filter="strict-match")
    summary = summarize(log)["tiny-llm/strict-match"]
    records = [r for r in _records(path) if r["filter"] == "strict-match"]
    assert summary.queries == len(records)
    assert summary.attempt_accuracy == pytest.approx(np.mean([r["exact_match"] for r in records]))


def test_lm_eval_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConverterError, match="--log_samples"):
        convert(tmp_path, "lm-eval")


# ------------------------------------------------------------------ mot-cascade
@pytest.mark.parametrize(
    ("value", "task", "expected"),
    [
        # numbers: rounded to 4 decimals, printed by Python
        (18, "gsm", "18.0"), (179.99999999999997, "gsm", "180.0"),
        (12.666666666666666, "asdiv", "12.6667"), ("1,218", "gsm", "1218.0"),
        (None, "gsm", None),
        # other text is lower-cased
        ("Lee Avenue", "tabmwp", "lee avenue"), ("3:15 P.M.", "tabmwp", "3:15 p.m."),
        # dates: first M/D/YYYY anywhere, else a first line that is a named date
        ("5/1/2021", "date", "05/01/2021"), ("12/03/2017.", "date", "12/03/2017"),
        ("If today is 6/19/2019, a month ago was 5/19/2019.", "date", "06/19/2019"),
        ("Dec 30, 1958", "date", "12/30/1958"), ("June 1, 2021\n\n# ISO", "date", "06/01/2021"),
        ("May 6, 2002 (assuming 2012)", "date", "May 6, 2002 (assuming 2012)"),
        ("  Explain: \n", "date", "Explain:"), ("11/02/YYYY", "date", "11/02/YYYY"),
    ],
)
def test_mot_result_normalisation(value: object, task: str, expected: str | None) -> None:
    from allocator.converters.mot_cascade import normalize_result

    assert normalize_result(value, task) == expected


def test_mot_gold_and_grading() -> None:
    from allocator.converters.mot_cascade import grade, normalize_gold

    assert normalize_gold({"05/01/2021": 1, "04/30/2021": 0}, "date") == "05/01/2021"
    assert normalize_gold({"05/01/2021": 1, "04/30/2021": 1}, "date") is None
    assert normalize_gold(20000, "gsm") == "20000.0"
    assert grade("19999.5", "20000.0") == 1.0  # within the relative tolerance 1e-4
    assert grade("279.9", "280.0") == 0.0
    assert grade(None, "280.0") == 0.0
    assert grade("12", None) is None


def test_mot_result_without_generation_is_rejected_not_dropped(tmp_path: Path) -> None:
    folder = tmp_path / "GPT4_result"
    folder.mkdir()
    (folder / "gsm_cot1.json").write_text(json.dumps(
        [{"question": "q", "answer": 3, "generated": ["three"], "results": [3.0, 3.0]}], indent=1))
    with pytest.raises(ConverterError, match="cost") as caught:
        convert(folder, "mot-cascade")
    assert caught.value.line == 2 and caught.value.source.endswith("gsm_cot1.json")
    log, rejected = convert(folder, "mot-cascade", skip_invalid=True)
    assert (log.n_attempts, len(rejected)) == (1, 1)
    assert rejected.rows.column("_file").to_pylist() == [str(folder / "gsm_cot1.json")]


def test_mot_refuses_files_that_are_not_result_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ConverterError, match="result files"):
        convert(tmp_path, "mot-cascade")


# ---------------------------------------------------------------- reasoning-gym
def test_reasoning_gym_difficulty_filter_and_split_keys(tmp_path: Path) -> None:
    def row(difficulty: str, model: str, question: str, score: float) -> dict:
        return {"difficulty": difficulty, "model": model, "task": "t", "q_idx": 0,
                "question": question, "model_answer": "a", "score": score,
                "response_chars": 10, "sample_idx": 0, "category": "c", "seed": 1}
    path = tmp_path / "samples.jsonl"
    rows = [row("easy", "m1", "Q?", 1.0), row("easy", "m2", "Q?", 0.5),
            row("hard", "m1", "H1?", 0.995), row("hard", "m2", "H2?", 0.0)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    log, _ = convert(path, "reasoning-gym")
    assert log.correct.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert log.extra["task_score"].tolist() == [1.0, 0.5, 0.995, 0.0]
    # one key, two different questions under 'hard': two queries
    assert log.query_ids[0] == "easy/t/0"
    assert sorted(q.split("~")[0] for q in log.query_ids[1:]) == ["hard/t/0", "hard/t/0"]
    hard, _ = convert(path, "reasoning-gym", difficulty="hard")
    assert set(hard.queries.metadata["difficulty"]) == {"hard"} and hard.n_attempts == 2
    with pytest.raises(ParameterError, match="'difficulty'"):
        convert(path, "reasoning-gym", difficulty="medium")


# ------------------------------------------------------------------------ codet
def test_codet_whitespace_variants_vote_together(tiny_source) -> None:
    written = tiny_source("codet")
    log, _ = convert(written.source, "codet")
    assert log.n_queries == 2 and len(log.answers) == 1  # all completions read "return x"
    assert log.answers[0] == "return x"
    assert log.queries.text[0] == "def f0(x):\n"


# ---------------------------------------------------------------- SWE-bench Pro
@pytest.mark.parametrize(
    ("configuration", "model", "run"),
    [
        ("GPT-4o - paper", "GPT-4o", "paper"),
        ("Claude 4 Sonnet - 10132025", "Claude Sonnet 4", "10132025"),
        ("Claude Sonnet 4 - paper", "Claude Sonnet 4", "paper"),
        ("Gemini 2.5 Pro Preview -- debug-oct22", "Gemini 2.5 Pro Preview", "debug-oct22"),
        ("GPT-5 High - paper", "GPT-5 High", "paper"),
        ("my-agent", "my-agent", ""),
    ],
)
def test_swe_bench_pro_configuration_names(configuration: str, model: str, run: str) -> None:
    from allocator.converters.swe_bench_pro import base_model_name

    assert base_model_name(configuration) == (model, run)


def test_swe_bench_pro_answers_are_run_ids_and_repo_is_read(tiny_source) -> None:
    written = tiny_source("swe-bench-pro")
    log, _ = convert(written.source, "swe-bench-pro")
    assert sorted(log.answers) == sorted(log.attempt_id)
    assert set(log.queries.metadata["repo"]) == {"acme/widget", "acme/gadget"}
    merged, _ = convert(written.source, "swe-bench-pro", merge_reruns=True)
    assert merged.arms == ("GPT-4o", "Kimi")
