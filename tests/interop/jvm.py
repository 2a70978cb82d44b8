"""A genuine Infinitic 0.18.4 JVM for tests: build the example project once, run its modes.

- ``../shared/infinitic/`` (beside the repo clone; CI puts a copy there) holds the Infinitic jar,
  ``install.sh`` and ``example/``. shared/ is read-only, so the example is copied to
  ``<repo>/.cache/interop-example`` with this suite's overlay (``tests/interop/jvm_overlay``) and
  built there with ``mvn -B -q package``, only when a source is newer than the built jar (the first
  build downloads ~130 MB into ``~/.m2``; later ones are cached there).
- ``JvmRunner`` starts ``bench.MainKt`` (``mode=external|serve|...``) as a subprocess against the
  test broker, with a config folder generated from the example's YAML for a unique namespace.
- Missing java/mvn or the jar is a skip with one line; a failed build is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("INFINITIC_SHARED", ROOT.parent / "shared" / "infinitic"))
JAR = SHARED / "infinitic-all-0.18.4.jar"
EXAMPLE = SHARED / "example"
OVERLAY = Path(__file__).resolve().parent / "jvm_overlay"
BUILD = ROOT / ".cache" / "interop-example"
M2_JAR = (
    Path.home() / ".m2" / "repository" / "io" / "infinitic" / "local" / "infinitic-all" / "0.18.4"
    / "infinitic-all-0.18.4.jar"
)
_build_lock = threading.Lock()


def missing() -> str | None:
    """Why the JVM tests cannot run here (one line), or None."""
    for tool in ("java", "mvn"):
        if shutil.which(tool) is None:
            return f"{tool} not found: the Infinitic JVM interop tests need java 17+ and mvn"
    if not JAR.is_file():
        return f"{JAR} not found: the Infinitic JVM interop tests need ../shared/infinitic"
    return None


def _sources(base: Path) -> list[Path]:
    return [p for p in base.rglob("*") if p.is_file()]


def _sync(src: Path, dst: Path) -> None:
    """Copy files of ``src`` into ``dst`` when their content differs (keeps mtimes meaningful)."""
    for path in _sources(src):
        target = dst / path.relative_to(src)
        content = path.read_bytes()
        if path.name == "Main.kt":
            content = _patch_main(content.decode()).encode()
        if target.is_file() and target.read_bytes() == content:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.chmod(0o644)
        target.write_bytes(content)
        target.chmod(0o755 if os.access(path, os.X_OK) else 0o644)


def build() -> Path:
    """The built example project (installs Infinitic into ~/.m2 and runs mvn only when needed)."""
    with _build_lock:
        if not M2_JAR.is_file() or M2_JAR.stat().st_size != JAR.stat().st_size:
            _run([str(SHARED / "install.sh")], cwd=SHARED, what="install.sh")
        BUILD.mkdir(parents=True, exist_ok=True)
        _sync(EXAMPLE, BUILD)
        if OVERLAY.is_dir():
            _sync(OVERLAY, BUILD)
        built = BUILD / "target" / "infinitic-bench-1.jar"
        newest = max(p.stat().st_mtime for p in [BUILD / "pom.xml", *_sources(BUILD / "src")])
        if not built.is_file() or built.stat().st_mtime < newest or not (BUILD / "lib").is_dir():
            _run(["mvn", "-B", "-q", "package"], cwd=BUILD, what="mvn package", timeout=1100)
        return BUILD


def _patch_main(text: str) -> str:
    """The runner's own admin/broker URLs come from PULSAR_URL / PULSAR_ADMIN_URL when set."""
    return text.replace(
        'const val PULSAR = "pulsar://127.0.0.1:6650"',
        'val PULSAR: String = System.getenv("PULSAR_URL") ?: "pulsar://127.0.0.1:6650"',
    ).replace(
        'const val ADMIN = "http://127.0.0.1:8080"',
        'val ADMIN: String = System.getenv("PULSAR_ADMIN_URL") ?: "http://127.0.0.1:8080"',
    )


def _run(cmd: Sequence[str], cwd: Path, what: str, timeout: float = 600) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")


def write_config(folder: Path, namespace: str, service_url: str, admin_url: str) -> Path:
    """The example's YAML configs, with the namespace and broker URLs of this test."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in (BUILD / "config").glob("*.yml"):
        shutil.copyfile(path, folder / path.name)
    text = (BUILD / "config" / "transport.yml").read_text()
    for key, value in (("brokerServiceUrl", service_url), ("webServiceUrl", admin_url), ("namespace", namespace)):
        # a text edit: hoplite reads `inMemory:` but not the `inMemory: null` a YAML dump writes
        text, count = re.subn(rf"(?m)^(\s+{key}:).*$", rf'\g<1> "{value}"', text)
        if count != 1:
            raise RuntimeError(f"transport.yml of the example has no single `{key}:` line")
    (folder / "transport.yml").write_text(text)
    return folder


class JvmRunner:
    """``bench.MainKt`` in a subprocess; its output goes to ``log`` (read it on failure)."""

    def __init__(
        self, project: Path, config: Path, log: Path, *args: str, env: dict[str, str], main: str = "bench.MainKt",
        jvm_options: Sequence[str] = ("-Xmx1g", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"),
    ) -> None:
        self.log = log
        cmd = [
            "java", *jvm_options,
            "-cp", f"{project / 'target' / 'classes'}:{project / 'lib'}/*",
            main, f"config={config}", *args,
        ]  # fmt: skip
        self._out = log.open("wb")
        self.proc = subprocess.Popen(
            cmd, cwd=project, stdout=self._out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """Poll the output until ``pattern`` appears (fails early if the JVM exits)."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            found = regex.search(self.output())
            if found:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(f"JVM exited ({self.proc.returncode}) before /{pattern}/:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no /{pattern}/ from the JVM after {timeout:.0f}s:\n{self.tail()}")
            time.sleep(0.2)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"JVM still running after {timeout:.0f}s:\n{self.tail()}") from None

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()
