"""The Dockerfile, read statically: no Docker engine runs on the development machines or in CI,
so the image cannot be built here (deploy/README.md). deploylib.check_dockerfile holds the rules;
the tests below also state the main facts one by one."""

from __future__ import annotations

from pathlib import PurePosixPath

import deploylib


def test_dockerfile_has_no_problems(dockerfile, bundle):
    assert deploylib.check_dockerfile(dockerfile, bundle) == []


def test_runtime_stage_is_debian_12_slim(dockerfile):
    assert dockerfile.base_image(dockerfile.stages[-1]) == "debian:bookworm-slim"


def test_build_stage_is_swift_6_3_1_on_debian_12(dockerfile):
    build = dockerfile.stage("build")
    assert build is not None
    assert dockerfile.base_image(build) == "swift:6.3.1-bookworm"


def test_build_stage_builds_the_release_product_and_plugins(dockerfile):
    run = " ".join(r.rest for r in dockerfile.stage("build").all("RUN"))
    assert "swift build -c release --product scenescore" in run
    for product in deploylib.plugin_products():
        assert product in run


def test_target_cpu_is_a_build_arg(dockerfile):
    args = [i.rest for i in dockerfile.stage("build").all("ARG")]
    assert f"SCENESCORE_TARGET_CPU={deploylib.package_default_target_cpu()}" in args


def test_final_stage_runs_scenescore_as_a_numeric_non_root_user(dockerfile):
    final = dockerfile.stages[-1]
    uid = deploylib.user_of(final).split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    entry = final.all("ENTRYPOINT")[-1]
    assert entry.rest.startswith("["), "exec form, so SIGTERM reaches the server"
    assert PurePosixPath(entry.words()[0]).name == "scenescore"
    assert final.all("CMD")[-1].words()[0] == "serve"


def test_image_provides_the_directories_the_deployment_names(dockerfile, bundle):
    settings = deploylib.Settings(bundle)
    destinations = [c.words()[-1].rstrip("/") for c in dockerfile.stages[-1].all("COPY")]
    assert settings.get("modelDir") in destinations
    assert settings.get("pluginDir") in destinations


def test_dockerignore_keeps_build_outputs_and_state_out_but_sources_in():
    patterns = deploylib.dockerignore_patterns()
    for excluded in (".build", ".build-serve", "var", "var/admin.token", ".git"):
        assert deploylib.dockerignored(excluded, patterns), excluded
    for kept in ("Package.swift", "Sources/Server/Routes.swift", "Plugins", "Tests/PluginFixtures",
                 "scripts/install-plugins.sh"):
        assert not deploylib.dockerignored(kept, patterns), kept
