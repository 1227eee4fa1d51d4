from evolinstruct.core.prompting import alpaca_prompt
from evolinstruct.train.data import IGNORE, tokenize_pair


def test_labels_cover_exactly_the_response_and_eos(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    out = tokenize_pair(tok, "Write add.", "def add(a, b):\n    return a + b", max_length=512)
    prompt_ids = tok(alpaca_prompt("Write add."))["input_ids"]
    response_ids = tok("def add(a, b):\n    return a + b", add_special_tokens=False)["input_ids"]
    start = len(prompt_ids)
    assert out["input_ids"] == prompt_ids + response_ids + [tok.eos_token_id]  # no merge across the boundary
    assert out["labels"][:start] == [IGNORE] * start
    assert out["labels"][start:] == response_ids + [tok.eos_token_id]  # mask starts at the first response token
    assert out["labels"][-1] == tok.eos_token_id


def test_eos_stays_a_target_after_padding_even_when_pad_equals_eos(tiny_model):
    from transformers import AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    tok = AutoTokenizer.from_pretrained(tiny_model)
    short = tokenize_pair(tok, "a", "b", 64)
    long = tokenize_pair(tok, "a much longer instruction here", "and a longer answer too", 64)
    batch = DataCollatorForLanguageModeling(pad_token_id=tok.eos_token_id)([short, long])
    row = batch["labels"][0].tolist()
    assert row[len(short["labels"]) - 1] == tok.eos_token_id
    assert row[len(short["labels"]):] == [IGNORE] * (len(row) - len(short["labels"]))
    assert batch["attention_mask"][0].tolist().count(1) == len(short["input_ids"])


def test_truncation_keeps_prompt_mask_consistent(tiny_model):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    out = tokenize_pair(tok, "x " * 10, "y " * 400, max_length=40)
    assert len(out["input_ids"]) == len(out["labels"]) == 40


def test_the_length_limit_truncates_and_drops_and_says_how_many(tiny_model):
    import datasets
    from transformers import AutoTokenizer

    from evolinstruct.train.data import tokenize_dataset

    tok = AutoTokenizer.from_pretrained(tiny_model)
    rows = [{"instruction": "Add.", "output": "def add(a, b):\n    return a + b"},  # fits
            {"instruction": "Short.", "output": "x = 1\n" * 80},  # truncated, still has response tokens
            {"instruction": "Explain " + "in detail " * 80, "output": "Done."}]  # prompt alone is too long
    fits = len(tokenize_pair(tok, rows[0]["instruction"], rows[0]["output"], 10**6)["input_ids"])
    data, report = tokenize_dataset(datasets.Dataset.from_list(rows), tok, max_length=fits)
    assert (report.examples_in, report.longer_than_max_length, report.dropped_for_length) == (3, 2, 1)
    assert len(data) == report.trained == 2
    assert data["length"] == [fits, fits]
    assert data["response_tokens"] == [sum(label != IGNORE for label in row) for row in data["labels"]]
    assert f"2 of 3 examples are longer than sft.max_length={fits}: 1 truncated to it, 1 dropped" in report.line(fits)


def test_the_tokenized_set_is_cached_by_data_tokenizer_and_max_length(tmp_path, tiny_model):
    import datasets
    from transformers import AutoTokenizer

    from evolinstruct.train.data import cached_tokenized

    tok = AutoTokenizer.from_pretrained(tiny_model)
    source = tmp_path / "dataset"
    datasets.Dataset.from_list([{"instruction": "Add.", "output": "def add(a, b):\n    return a + b"}] * 3
                               ).save_to_disk(str(source))
    first, _, cached = cached_tokenized(source, "a" * 64, tok, 64, tmp_path / "cache")
    assert not cached
    again, report, cached = cached_tokenized(source, "a" * 64, tok, 64, tmp_path / "cache")
    assert cached and again.to_list() == first.to_list() and report.examples_in == 3
    assert not cached_tokenized(source, "b" * 64, tok, 64, tmp_path / "cache")[2]  # new data
    assert not cached_tokenized(source, "a" * 64, tok, 32, tmp_path / "cache")[2]  # new max_length
