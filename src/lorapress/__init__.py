"""lorapress: how much can a LoRA adapter learn from compressed text?"""

__version__ = "0.1.0"

# The study's vocabulary: the generative levels in rising strength, then the
# extractive variant. `original_text` is the uncompressed reference condition.
ORIGINAL = "original_text"
SUMMARY_LEVELS = (
    "summ_l1_slight",
    "summ_l2_light",
    "summ_l3_medium",
    "summ_l4_heavy",
    "summ_l5_extreme",
)
EXTRACTIVE = "ext"
VARIANTS = (ORIGINAL, *SUMMARY_LEVELS, EXTRACTIVE)
BASELINE = "baseline"
