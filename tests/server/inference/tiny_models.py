"""Tiny random-init models with tokenizers built locally (no downloads), saved as safetensors folders
with a model card naming their ``pipeline_tag``: GPT-2 (text-generation, with a chat template), BERT
fill-mask, an NLI-style sequence classifier (text-classification and zero-shot), a token classifier, a
BERT embedding model (feature-extraction / sentence-similarity) and a ViT image classifier."""

from __future__ import annotations

import io
from pathlib import Path

WORDS = ("the a an is was of to and in on for with hubfs hub model models weights file files load loads gpu "  # noqa: SIM905
         "paris london berlin alice bob carol hello world good bad happy sad great day night cat dog runs "
         "fast slow very not this that it he she they we you i my your our git lfs serve test tests").split()
CORPUS = [" ".join(WORDS[i:i + 7]) for i in range(0, len(WORDS), 3)] * 4
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|endoftext|>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
NLI_LABELS = {0: "entailment", 1: "neutral", 2: "contradiction"}
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
IMAGE_LABELS = {0: "cat", 1: "dog", 2: "bird"}


def card(folder: Path, tag: str) -> None:
    extra = "\ntags:\n- sentence-similarity\n" if tag == "feature-extraction" else "\n"
    (folder / "README.md").write_text(f"---\npipeline_tag: {tag}\nlibrary_name: transformers{extra}---\n# tiny\n")


def bert_tokenizer(folder: Path):  # type: ignore[no-untyped-def]
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz.,!?",
             *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz")]
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), model_max_length=64)
    tok.save_pretrained(folder)
    return tok


def gpt2_tokenizer():  # type: ignore[no-untyped-def]
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>", unk_token="<|endoftext|>", model_max_length=128)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_gpt2(folder: Path, layers: int = 2, width: int = 32) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    tok = gpt2_tokenizer()
    cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=width, n_layer=layers, n_head=2,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    GPT2LMHeadModel(cfg).eval().save_pretrained(folder)
    tok.save_pretrained(folder)
    card(folder, "text-generation")
    return folder


def _bert_config(vocab: int, **kw):  # type: ignore[no-untyped-def]
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=37, max_position_embeddings=64, **kw)


def build_bert(folder: Path, kind: str) -> Path:
    """``kind``: fill-mask, text-classification, token-classification or feature-extraction."""
    import torch
    import transformers

    torch.manual_seed(2)
    tok = bert_tokenizer(folder)
    labels = {"text-classification": NLI_LABELS, "token-classification": NER_LABELS}.get(kind)
    kw = {"id2label": labels, "label2id": {v: k for k, v in labels.items()}} if labels else {}
    cls = {"fill-mask": "BertForMaskedLM", "text-classification": "BertForSequenceClassification",
           "token-classification": "BertForTokenClassification", "feature-extraction": "BertModel"}[kind]
    getattr(transformers, cls)(_bert_config(len(tok), **kw)).eval().save_pretrained(folder)
    card(folder, kind)
    return folder


def build_vit(folder: Path) -> Path:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(3)
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=37, id2label=IMAGE_LABELS, label2id={v: k for k, v in IMAGE_LABELS.items()})
    ViTForImageClassification(cfg).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    card(folder, "image-classification")
    return folder


def png(seed: int = 0) -> bytes:
    """A small RGB PNG."""
    from PIL import Image

    img = Image.new("RGB", (40, 40), (seed * 40 % 256, 120, 200))
    for x in range(0, 40, 4):
        img.putpixel((x, x), (255, 255, 0))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()
