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
