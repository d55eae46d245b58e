# train: fit the UNet to the processed image. The periodic checkpoint
# results/<image>/train/resume/latest.pt is deliberately NOT an output: Snakemake neither deletes
# it when a job fails nor before a rerun, so `train` resumes from it.


rule train:
    input:
        path("processed"),
    output:
        checkpoint=path("checkpoint"),
        loss=report(
            path("loss"),
            caption="../report/loss.rst",
            category="{image}",
            subcategory="Training",
            labels={"image": "{image}", "figure": "loss (CSV)"},
        ),
        loss_plot=report(
            path("loss_plot"),
            caption="../report/loss.rst",
            category="{image}",
            subcategory="Training",
            labels={"image": "{image}", "figure": "loss curve"},
        ),
        metrics=report(
            path("train_metrics"),
            caption="../report/train_metrics.rst",
            category="{image}",
            subcategory="Training",
            labels={"image": "{image}", "figure": "training metrics"},
        ),
    params:
        file=PARAMS_FILE,
        settings=stage_settings("train"),
    log:
        log_path("train"),
    threads: threads("train")
    resources:
        gpu=gpus("train"),
        mem_mb=mem_mb("train"),
        runtime=runtime("train"),
        cpus_per_task=threads("train"),
    conda:
        "../../environment.yml"
    shell:
        stage_command("train")


TARGETS.extend(expand(path("train_metrics"), image=IMAGES))
