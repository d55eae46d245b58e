# manipulate: the edits params.yaml's manipulate.edits lists for the image (paper section 4.4).


rule manipulate:
    input:
        checkpoint=path("checkpoint"),
        processed=path("processed"),
        edits=manipulate_inputs,
    output:
        report(
            directory(path("manipulate")),
            patterns=["{edit}/result.png"],
            caption="../report/edits.rst",
            category="{image}",
            subcategory="Edits",
            labels={"image": "{image}", "figure": "{edit}"},
        ),
    params:
        file=PARAMS_FILE,
        settings=manipulate_settings,
    log:
        log_path("manipulate"),
    threads: threads("manipulate")
    resources:
        gpu=gpus("manipulate"),
        mem_mb=mem_mb("manipulate"),
        runtime=runtime("manipulate"),
        cpus_per_task=threads("manipulate"),
    conda:
        "../../environment.yml"
    shell:
        stage_command("manipulate")


TARGETS.extend(expand(path("manipulate"), image=IMAGES))
