"""Padding-free SFT kept honest: the batch plan keeps the paper's global batches, packed examples
stay apart on every attention path that runs on CPU (logits and loss equal to training each alone),
a path that lets them mix is never chosen, and the gradient of a global batch does not depend on
how it is split into micro-batches, padded or padding-free."""

from __future__ import annotations

import random

import pytest

from evolinstruct.train.batching import cost, global_batches, plan_epoch
from evolinstruct.train.data import IGNORE
from evolinstruct.train.model import choose_attention, keeps_examples_apart

CPU_PATHS = ["sdpa", "eager"]


def fake_examples(n: int, seed: int = 0, vocab: int = 200) -> list[dict]:
    """Token ids with a masked prompt and a response, as sft_data builds them."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt, response = rng.randint(3, 12), rng.randint(2, 20)
        ids = [rng.randrange(3, vocab) for _ in range(prompt + response)]
        out.append({"input_ids": ids, "labels": [IGNORE] * prompt + ids[prompt:], "response_tokens": response})
    return out


def test_every_example_once_per_epoch_in_the_same_global_batches_whatever_the_split():
    rng = random.Random(1)
    lengths = [rng.randint(5, 300) for _ in range(103)]
    response = [n // 2 for n in lengths]
    batches = global_batches(103, 16, seed=7, epoch=0)
    assert [len(b) for b in batches] == [16] * 6 + [7]
    for padding_free in (True, False):
        for world in (1, 3):
            for budget in (200, 300, 1000, 5000):  # 200: the longest examples go alone
                per_rank = [plan_epoch(lengths, response, 16, world, r, budget, padding_free, 7, 0)
                            for r in range(world)]
                for k, batch in enumerate(batches):
                    steps = [plan[k] for plan in per_rank]
                    seen = sorted(i for s in steps for mb in s.micro_batches for i in mb)
                    assert seen == sorted(batch)  # the global batch, no matter the split
                    assert len({len(s.micro_batches) for s in steps}) == 1  # ranks in lockstep
                    assert all(cost(lengths, mb, padding_free) <= budget or len(mb) == 1
                               for s in steps for mb in s.micro_batches)
                    assert steps[0].response_tokens == sum(response[i] for i in batch)
    assert global_batches(103, 16, seed=7, epoch=1) != batches  # reshuffled each epoch


def test_bucketed_padding_wastes_little():
    rng = random.Random(2)
    lengths = [int(rng.lognormvariate(4.5, 0.6)) + 5 for _ in range(2048)]
    steps = plan_epoch(lengths, lengths, 512, 1, 0, 2048, False, 3, 0)
    real, computed = sum(s.real_tokens for s in steps), sum(s.computed_tokens for s in steps)
    assert 1 - real / computed < 0.05


def packed_collate():
    from evolinstruct.train.trainer import padding_free_collator

    return padding_free_collator(flash_kwargs=False)


@pytest.mark.parametrize("attention", CPU_PATHS)
def test_packed_examples_have_the_logits_and_loss_they_have_alone(tiny_model, attention):
    import torch
    from transformers import AutoModelForCausalLM

    from evolinstruct.train.trainer import micro_batch_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation=attention)
    examples = fake_examples(4, seed=3)
    batch = packed_collate()([{k: e[k] for k in ("input_ids", "labels")} for e in examples])
    assert "attention_mask" not in batch  # an all-ones mask would let the examples see each other
    with torch.no_grad():
        packed = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0]
        start = 0
        for example in examples:
            ids = torch.tensor([example["input_ids"]])
            alone = model(input_ids=ids).logits[0]
            assert torch.allclose(packed[start:start + len(alone)], alone, atol=1e-5)
            start += len(alone)
        # loss: the packed batch's loss is the sum of each example's loss alone
        total = sum(e["response_tokens"] for e in examples)
        together = micro_batch_loss(model, batch, total)
        apart = sum(micro_batch_loss(model, packed_collate()([{k: e[k] for k in ("input_ids", "labels")}]), total)
                    for e in examples)
    assert together.item() == pytest.approx(apart.item(), abs=1e-5)


@pytest.mark.parametrize("attention", CPU_PATHS)
def test_the_probe_passes_cpu_paths_and_catches_a_leaking_mask(tiny_model, attention):
    import torch
    from transformers import AutoConfig

    from evolinstruct.train.model import packed_logit_gaps, probe_model

    model = probe_model(AutoConfig.from_pretrained(tiny_model), attention, "cpu", torch.float32)
    examples = [e["input_ids"] for e in fake_examples(3, seed=4)]
    gap, leak = packed_logit_gaps(model, examples, packed_collate(), "cpu")
    assert keeps_examples_apart(gap, leak) and gap < 1e-5 and leak > 0.01

    def leaking(features):  # what a 2D all-ones attention mask does to a packed row
        batch = packed_collate()(features)
        return {**batch, "attention_mask": torch.ones_like(batch["input_ids"])}

    gap, leak = packed_logit_gaps(model, examples, leaking, "cpu")
    assert not keeps_examples_apart(gap, leak)


def test_a_path_that_fails_the_probe_or_cannot_run_is_never_chosen():
    gaps = {"flash_attention_2": RuntimeError("flash_attn is not installed"), "flex_attention": (0.4, 0.5),
            "sdpa": (1e-7, 0.5), "eager": (1e-7, 0.5)}

    def probe(name):
        if isinstance(gaps[name], Exception):
            raise gaps[name]
        return gaps[name]

    assert choose_attention(list(gaps), probe) == "sdpa"
    assert choose_attention(["flex_attention"], probe) is None  # -> the padded fallback
    assert choose_attention(["eager"], lambda name: (0.0, 0.0)) is None  # a probe that shows nothing proves nothing


@pytest.mark.parametrize("padding_free", [True, False])
def test_the_gradient_of_a_global_batch_does_not_depend_on_its_split(tiny_model, padding_free):
    import torch
    from transformers import AutoModelForCausalLM

    from evolinstruct.train.trainer import accumulate_gradients, padded_collator

    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa")
    examples = fake_examples(16, seed=5)
    lengths = [len(e["input_ids"]) for e in examples]
    response = [e["response_tokens"] for e in examples]
    collate = packed_collate() if padding_free else padded_collator(pad_token_id=1)

    # the reference: mean cross-entropy over every response token of the batch, in one padded pass
    reference = padded_collator(pad_token_id=1)([{k: e[k] for k in ("input_ids", "labels")} for e in examples])
    model.zero_grad()
    logits = model(input_ids=reference["input_ids"], attention_mask=reference["attention_mask"]).logits
    torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), reference["labels"][:, 1:].flatten(),
                                      ignore_index=IGNORE).backward()
    expected = [p.grad.clone() for p in model.parameters()]

    def plan(budget):
        (step,) = plan_epoch(lengths, response, 16, 1, 0, budget, padding_free, seed=0, epoch=0)
        return step

    for micro in (1, 2, 8):  # the largest budget that splits the batch into `micro` micro-batches
        step = next(s for b in range(20 * max(lengths), max(lengths) - 1, -1)
                    if len((s := plan(b)).micro_batches) == micro)
        batches = [collate([{k: examples[i][k] for k in ("input_ids", "labels")} for i in mb])
                   for mb in step.micro_batches]
        model.zero_grad()
        accumulate_gradients(model, batches, step.response_tokens, lambda loss, last: loss.backward())
        for got, want in zip((p.grad for p in model.parameters()), expected, strict=True):
            assert torch.allclose(got, want, atol=1e-6, rtol=1e-4), f"{micro} micro-batches"
