# lorapress: how much can a LoRA adapter learn from compressed text,
# and which rank fits which compression?
#
#   snakemake --cores 8 results/report.html      # the whole study
#   snakemake -n                                  # what would run
#
# data/ (or download) -> prepare -> compress -> stats -> train -> evaluate -> judge
#                                            \-> decompose ------------------> aggregate -> report


# A study's own config file (--configfile) is the whole study, on the schema's defaults: config.yaml, the
# default study, is read only when none is given, so its sample datasets never run beside a user's.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/compress.smk"
include: "workflow/rules/stats.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/decompose.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/check.smk"


onstart:
    check_data()


rule all:
    default_target: True
    input:
        final_outputs(),
