"""Prompt ensembling for zero-shot classification with a video-text model (CLIP, Sec. 3.1.4).

A class name is filled into every prompt template; the class's text embedding is the mean of the
L2-normalized template embeddings, normalized again (Radford et al., 2021, "Learning Transferable
Visual Models From Natural Language Supervision", Sec. 3.1.4: averaging in embedding space,
so the classifier costs one text pass per class and template, once per evaluation).

:data:`KINETICS_PROMPTS` is the 28-template set CLIP's ``data/prompts.md`` gives for Kinetics-700,
the set video CLIP models (ViCLIP among them) are evaluated with on Kinetics zero-shot.
:class:`~vidlit.tasks.zero_shot.ZeroShotClassification` uses it by default and
:class:`~vidlit.tasks.video_text.VideoTextPretrain` validates with :data:`DEFAULT_PROMPTS`; both
take their own list (``prompt_templates`` in YAML).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DEFAULT_PROMPTS", "KINETICS_PROMPTS", "check_prompt_templates", "class_embeddings"]

# a short caption-style ensemble (VideoTextPretrain's validation default)
DEFAULT_PROMPTS = ("{}", "a video of {}.", "a clip showing {}.", "footage of {}.")

# CLIP's Kinetics-700 templates (openai/CLIP, data/prompts.md), in its order: four openings times
# seven ways of attaching the action to a person
KINETICS_PROMPTS = tuple(
    f"{opening} {body}."
    for opening in ("a photo of", "a video of", "a example of", "a demonstration of")
    for body in (
        "{}",
        "a person {}",
        "a person using {}",
        "a person doing {}",
        "a person during {}",
        "a person performing {}",
        "a person practicing {}",
    )
)


def check_prompt_templates(templates: Sequence[str]) -> tuple[str, ...]:
    """The templates as a tuple, each checked to hold exactly one ``{}``.

    Raises:
        ValueError: no templates, a template that is not a string, or one without exactly one ``{}``.
    """
    if isinstance(templates, str):
        templates = (templates,)
    templates = tuple(templates)
    bad = [t for t in templates if not isinstance(t, str) or t.count("{}") != 1]
    if not templates or bad:
        raise ValueError(
            f"prompt_templates must each hold exactly one '{{}}' for the class name, got {bad or 'none'}"
        )
    return templates


@torch.no_grad()
def class_embeddings(
    model: nn.Module, class_names: Sequence[str], templates: Sequence[str], batch_size: int = 256
) -> Tensor:
    """The zero-shot classifier: ``[num_classes, dim]`` unit-norm class embeddings.

    Row ``c`` is ``normalize(mean_t(encode_text(templates[t].format(class_names[c]))))``, where
    ``encode_text`` returns unit-norm embeddings (CLIP's prompt ensembling).

    Args:
        model: any model with ``encode_text(list[str]) -> [n, dim]`` unit-norm embeddings
            (:class:`~vidlit.backbones.video_text.VideoTextModel`).
        class_names: the class names, in class-index order.
        templates: prompt templates, each with one ``{}``.
        batch_size: prompts per text-tower call (Kinetics-400 x 28 templates is 11,200 prompts).

    Raises:
        ValueError: no class names, or bad templates.
    """
    templates = check_prompt_templates(templates)
    if not class_names:
        raise ValueError("class_embeddings needs at least one class name")
    prompts = [template.format(name) for name in class_names for template in templates]
    chunks = [model.encode_text(prompts[i : i + batch_size]) for i in range(0, len(prompts), batch_size)]
    # (c t) d -> c t d: the templates of one class are consecutive
    embeddings = F.normalize(torch.cat(chunks).float(), dim=-1).view(len(class_names), len(templates), -1)
    return F.normalize(embeddings.mean(dim=1), dim=-1)
