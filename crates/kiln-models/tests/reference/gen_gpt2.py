"""Reference fixtures for kiln's GPT-2 (crates/kiln-models/tests/gpt2*.rs).

Writes, under crates/kiln-models/tests/fixtures/gpt2/:
  tiny-a/   GPT2LMHeadModel (names "transformer.*"), model.safetensors, tokenizer.json,
            generation_config.json; gelu_new.
  tiny-b/   GPT2Model weights (names without prefix) in two shards + index, vocab.json +
            merges.txt, n_inner, scale_attn_by_inverse_layer_idx, exact gelu.
  gpt2_parity.json   for each folder: prompts, transformers' logits, 50 greedy tokens,
                     a left-padded batch's greedy tokens, tiny tokenizer encodings.
  gpt2_tokenizer_extra.json   GPT-2's own tokenizer (assets/gpt2/tokenizer.json) on
                     Unicode, emoji, Chinese, runs of spaces and <|endoftext|>.

Run from the repository root:  python crates/kiln-models/tests/reference/gen_gpt2.py
Needs torch, transformers (5.x), tokenizers.
"""
import json
import os
import shutil

import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model, GPT2TokenizerFast

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "gpt2")
ASSET = os.path.join(HERE, "..", "..", "assets", "gpt2", "tokenizer.json")

CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Once upon a time there was a little model that learned to write text.",
    "kiln is a Rust toolkit for machine learning; it trains and samples models.",
    "Hello world! Hello again, world. How are you today? I am fine, thank you.",
    "Numbers 0123456789 and symbols #$%&*() also appear here.",
]


def train_tokenizer(vocab_size):
    tok = ByteLevelBPETokenizer()
    tok.train_from_iterator(CORPUS * 20, vocab_size=vocab_size, min_frequency=2,
                            special_tokens=["<|endoftext|>"], show_progress=False)
    return tok


def randomise(model, seed):
    """Spread the weights so logits differ clearly (greedy ties become unlikely) and layer
    norms are not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ln" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))


def make_folder(name, cfg_kwargs, seed, sharded):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    tok = train_tokenizer(cfg_kwargs["vocab_size"])
    eot = tok.token_to_id("<|endoftext|>")
    cfg = GPT2Config(bos_token_id=eot, eos_token_id=eot, **cfg_kwargs)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(cfg).eval()
    randomise(model, seed)
    if sharded:
        # GPT2Model saves names without "transformer."; two shards and an index.
        model.transformer.save_pretrained(d, max_shard_size="60KB", safe_serialization=True)
        tok.save_model(d)  # vocab.json + merges.txt
        hf_tok = GPT2TokenizerFast.from_pretrained(d)  # reads vocab.json + merges.txt
    else:
        model.save_pretrained(d, safe_serialization=True)
        hf_tok = GPT2TokenizerFast(tokenizer_object=tok._tokenizer)
        hf_tok.save_pretrained(d)
        for extra in ["tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt"]:
            p = os.path.join(d, extra)
            if os.path.exists(p):
                os.remove(p)
    model = GPT2LMHeadModel.from_pretrained(d).eval()
    return d, model, hf_tok, eot


def greedy(model, ids, n, eot, mask=None):
    with torch.no_grad():
        out = model.generate(torch.tensor(ids), attention_mask=mask, do_sample=False,
                             max_new_tokens=n, min_new_tokens=n, pad_token_id=eot)
    return out[:, len(ids[0]):].tolist()


def cases(name, cfg_kwargs, seed, sharded):
    d, model, hf_tok, eot = make_folder(name, cfg_kwargs, seed, sharded)
    texts = ["Hello world! How are", "Once upon a time", "The quick brown fox jumps over"]
    prompts = [hf_tok.encode(t) for t in texts]
    with torch.no_grad():
        logits = [model(torch.tensor([p])).logits[0].tolist() for p in prompts]
    single = [greedy(model, [p], 50, eot)[0] for p in prompts]
    hf_tok.pad_token = "<|endoftext|>"
    hf_tok.padding_side = "left"
    batch = hf_tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.generate(**batch, do_sample=False, max_new_tokens=20, min_new_tokens=20,
                             pad_token_id=eot)
        # position ids as generate() derives them from the mask (transformers 5: 0 on padding)
        mask = batch["attention_mask"]
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        batch_logits = model(**batch, position_ids=pos).logits[:, -1, :].tolist()
    batch_tokens = out[:, batch["input_ids"].shape[1]:].tolist()
    tok_texts = ["Hello world", "  two  spaces", "émoji 🙂 and 中文", "a<|endoftext|>b"]
    return {
        "folder": name,
        "eos_token_id": eot,
        "texts": texts,
        "prompts": prompts,
        "logits": logits,
        "greedy_50": single,
        "batch_input_ids": batch["input_ids"].tolist(),
        "batch_attention_mask": batch["attention_mask"].tolist(),
        "batch_last_logits": batch_logits,
        "batch_greedy_20": batch_tokens,
        "tokenizer_cases": [{"text": t, "ids": hf_tok.encode(t)} for t in tok_texts],
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    parity = {
        "versions": {"torch": torch.__version__,
                     "transformers": __import__("transformers").__version__},
        "models": [
            cases("tiny-a", dict(vocab_size=300, n_positions=96, n_embd=32, n_layer=2, n_head=4,
                                 activation_function="gelu_new"), 1, False),
            cases("tiny-b", dict(vocab_size=320, n_positions=96, n_embd=24, n_layer=3, n_head=3,
                                 n_inner=40, activation_function="gelu",
                                 scale_attn_by_inverse_layer_idx=True), 2, True),
        ],
    }
    with open(os.path.join(OUT, "gpt2_parity.json"), "w") as f:
        json.dump(parity, f)

    tok = GPT2TokenizerFast(tokenizer_file=ASSET)
    extra = [
        "naïve café résumé — “quotes” ‘single’ …",
        "emoji: 🙂👍🏽🇫🇷 👨‍👩‍👧‍👦!",
        "中文分词测试，还有日本語のテキストと한국어.",
        "runs    of     spaces\t\ttabs\n\n\nand newlines   ",
        "<|endoftext|>",
        "before<|endoftext|>after <|endoftext|> spaced",
        "I'm you're they'll we've she'd IT'S",
        "",
        " ",
        "x" * 40 + " " + "ab" * 15,
    ]
    out = {"cases": [{"text": t, "ids": tok.encode(t),
                      "tokens": tok.convert_ids_to_tokens(tok.encode(t)),
                      "decoded": tok.decode(tok.encode(t))} for t in extra]}
    with open(os.path.join(OUT, "gpt2_tokenizer_extra.json"), "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
