#!/usr/bin/env python3
"""Checks the deployment files under deploy/ against the real binaries.

    tests/deploy/check_deploy.py BIN_DIR [--repo DIR] [--require-parse-only] [-v]

BIN_DIR holds the built schemagated, schemagate-agent and schemagatectl.

What is checked, one line per check, then "N passed, N failed":

  yaml  every *.yaml / *.yml file under deploy/ parses (PyYAML);
  cmd   every schemagated / schemagate-agent / schemagatectl command line in
        deploy/: Dockerfile ENTRYPOINT+CMD, HEALTHCHECK and RUN; compose
        entrypoint/command (joined with the image's ENTRYPOINT/CMD when the
        service builds one of our Dockerfile stages) and healthcheck tests;
        Kubernetes command/args of containers and init containers, exec probes
        and lifecycle hooks; systemd ExecStart= and friends (in the unit and
        its drop-ins, UNIT.d/*.conf);
  env   every SCHEMAGATE_* variable set next to those command lines (Dockerfile
        ENV, compose environment and env files, Kubernetes env, the systemd
        EnvironmentFile example) names a flag of a binary run there;
  ref   files the deployment refers to exist: compose build targets, env
        files, bind mounts and secrets, kustomization resources and patches;
        a compose override file (compose.NAME.yaml beside compose.yaml) is
        checked merged onto compose.yaml, as `docker compose -f compose.yaml
        -f compose.NAME.yaml` runs it; secret files that are generated
        (git-ignored) and absent are skipped;
  rule  PrometheusRule specs pass `promtool check rules`, and the alert unit
        tests beside them `promtool test rules` (skipped without promtool);
  libs  deploy/docker/runtime-packages.txt, with the packages they depend on,
        provides every shared library that each built binary loads (needs
        ldd, dpkg and apt-cache; skipped without them).

Command lines are validated by the binaries themselves: each is run with
SCHEMAGATE_PARSE_ONLY=1 in its environment, in which mode a binary parses its
flags and exits 0 if they are accepted, 2 with the parser's message if not,
and does nothing else. A binary is first probed with a harmless command line
(a missing migrations directory, a coordinator on port 1) to see whether it
supports that mode; one that does not is never run with the real command
lines: its flags are checked against its --help output instead (a NOTE says
so), unless --require-parse-only makes that a failure.

Standard library plus PyYAML (Debian's python3-yaml) only.
"""

import argparse
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the machine
    print("check_deploy: PyYAML is missing; install Debian's python3-yaml "
          "(apt-get install python3-yaml)", file=sys.stderr)
    sys.exit(2)

BINARIES = ("schemagated", "schemagate-agent", "schemagatectl")
PROBE_TIMEOUT = 15
RUN_TIMEOUT = 15

# Harmless command lines that exit 0 only under SCHEMAGATE_PARSE_ONLY=1:
# without it they fail at once (no migrations directory / nothing on port 1).
PROBES = {
    "schemagated": ["--migrations-dir", "/nonexistent/schemagate-parse-only-probe",
                    "--listen", "127.0.0.1:0",
                    "--database-url", "postgres://probe@127.0.0.1:1/probe"],
    "schemagate-agent": ["check", "--coordinator", "127.0.0.1:1", "--known", "1",
                         "--timeout", "1s"],
    "schemagatectl": ["health", "--coordinator", "127.0.0.1:1", "--timeout", "1s"],
}


# --- results --------------------------------------------------------------------
class Results:
    def __init__(self, verbose):
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.verbose = verbose

    def ok(self, kind, where, what, detail=""):
        self.passed += 1
        print("PASS  %-4s %s: %s%s" % (kind, where, what, ("  (%s)" % detail) if detail else ""))

    def fail(self, kind, where, what, why):
        self.failed += 1
        print("FAIL  %-4s %s: %s" % (kind, where, what))
        for line in why.strip().splitlines() or ["(no message)"]:
            print("            %s" % line)

    def skip(self, kind, where, why):
        self.skipped += 1
        print("SKIP  %-4s %s: %s" % (kind, where, why))

    def note(self, text):
        print("NOTE  %s" % text)


def show(argv):
    return " ".join(shlex.quote(a) for a in argv)


# --- a command line found in a file -----------------------------------------------
class Command:
    """argv[0] is one of BINARIES (a path or a bare name)."""

    def __init__(self, where, argv, context):
        self.where = where        # "deploy/compose/compose.yaml sample-app entrypoint"
        self.argv = argv
        self.context = context    # key of the group of commands that share an environment

    @property
    def binary(self):
        return os.path.basename(self.argv[0])


def binary_of(token):
    base = os.path.basename(token)
    return base if base in BINARIES else None


def split_shell(text):
    """Simple commands of a shell line: split at ;, &&, ||, | (no subshells)."""
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        return [text.split()]
    commands, current = [], []
    for token in tokens:
        if token and set(token) <= set(";&|"):
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    if current:
        commands.append(current)
    return commands


def ours(argv):
    """The part of argv that runs one of our binaries, or None. Skips a
    leading `exec`, `env VAR=...` and VAR=... assignments."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "exec" or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
            i += 1
            continue
        if os.path.basename(token) == "env":
            i += 1
            while i < len(argv) and (argv[i].startswith("-") or "=" in argv[i]):
                i += 1
            continue
        break
    if i < len(argv) and binary_of(argv[i]):
        return argv[i:]
    return None


# --- interpolation of ${VAR:-default} (compose) and $(VAR) (Kubernetes) -----------
def interpolate_compose(text, env):
    def repl(m):
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name in env and (env[name] or op not in (":-",)):
            return env[name]
        if op in (":-", "-"):
            return arg
        return "placeholder"
    text = text.replace("$$", "\0")
    text = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}", repl, text)
    text = re.sub(r"\$([A-Za-z_][A-Za-z0-9_]*)", lambda m: env.get(m.group(1), "placeholder"), text)
    return text.replace("\0", "$")


def walk_strings(value, fn):
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [walk_strings(v, fn) for v in value]
    if isinstance(value, dict):
        return {k: walk_strings(v, fn) for k, v in value.items()}
    return value


# --- Dockerfiles ----------------------------------------------------------------------
class Stage:
    def __init__(self, base, name, parent):
        self.base = base
        self.name = name
        self.entrypoint = parent.entrypoint if parent else None
        self.cmd = parent.cmd if parent else None
        self.env = dict(parent.env) if parent else {}
        self.lines = []           # (instruction, argv, line number)


def dockerfile_instructions(text):
    """(line number, INSTRUCTION, rest) with continuations joined, comments dropped."""
    out, buf, start = [], "", None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue  # comment line inside a continuation
        if start is None:
            start = number
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        parts = buf.strip().split(None, 1)
        out.append((start, parts[0].upper(), parts[1] if len(parts) > 1 else ""))
        buf, start = "", None
    return out


def exec_or_shell(rest):
    """Exec form (JSON array) -> argv; shell form -> ['/bin/sh', '-c', rest]."""
    rest = rest.strip()
    if rest.startswith("["):
        try:
            value = json.loads(rest)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return value, False
        except ValueError:
            pass
    return ["/bin/sh", "-c", rest], True


def parse_dockerfile(path):
    stages, by_name = [], {}
    for number, instruction, rest in dockerfile_instructions(open(path, encoding="utf-8").read()):
        if instruction == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--")]
            base = words[0] if words else ""
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            parent = by_name.get(base)
            stage = Stage(base, name, parent)
            stages.append(stage)
            if name:
                by_name[name] = stage
            continue
        if not stages:
            continue  # ARG before the first FROM
        stage = stages[-1]
        if instruction == "ENTRYPOINT":
            stage.entrypoint, _ = exec_or_shell(rest)
            stage.cmd = None  # Docker resets CMD when ENTRYPOINT is set
        elif instruction == "CMD":
            stage.cmd, _ = exec_or_shell(rest)
        elif instruction == "ENV":
            for key, value in parse_env_instruction(rest):
                stage.env[key] = value
        stage.lines.append((instruction, rest, number))
    return stages, by_name


def parse_env_instruction(rest):
    try:
        words = shlex.split(rest)
    except ValueError:
        return []
    if words and "=" not in words[0]:
        return [(words[0], " ".join(words[1:]))]  # legacy ENV KEY value
    return [tuple(w.split("=", 1)) for w in words if "=" in w]


def commands_of_shell_or_exec(argv, is_shell):
    if is_shell:
        return [c for c in (ours(cmd) for cmd in split_shell(argv[2])) if c]
    found = ours(argv)
    return [found] if found else []


def dockerfile_commands(rel, path, stages):
    commands = []
    for index, stage in enumerate(stages):
        label = stage.name or "stage %d" % index
        context = "%s#%s" % (rel, label)
        for instruction, rest, number in stage.lines:
            where = "%s:%d (%s, %s)" % (rel, number, label, instruction)
            if instruction == "RUN":
                argv, is_shell = exec_or_shell(rest)
                for cmd in commands_of_shell_or_exec(argv, is_shell):
                    commands.append(Command(where, cmd, context))
            elif instruction == "HEALTHCHECK":
                m = re.search(r"(?:^|\s)CMD\s+(.*)$", rest)
                if not m:
                    continue
                argv, is_shell = exec_or_shell(m.group(1))
                for cmd in commands_of_shell_or_exec(argv, is_shell):
                    commands.append(Command(where, cmd, context))
        # What the image runs: ENTRYPOINT + CMD as Docker joins them.
        entry = (stage.entrypoint or []) + (stage.cmd or [])
        if entry and (stage.entrypoint or stage.cmd):
            line = max((n for i, _, n in stage.lines if i in ("ENTRYPOINT", "CMD")), default=0)
            own = [i for i, _, _ in stage.lines if i in ("ENTRYPOINT", "CMD")]
            if own:  # report each image's command once, where it is written
                where = "%s:%d (%s, ENTRYPOINT+CMD)" % (rel, line, label)
                if entry[:2] == ["/bin/sh", "-c"]:
                    for cmd in commands_of_shell_or_exec(entry, True):
                        commands.append(Command(where, cmd, context))
                else:
                    found = ours(entry)
                    if found:
                        commands.append(Command(where, found, context))
    return commands


# --- compose --------------------------------------------------------------------------
def compose_checks(repo, rel, path, doc, dockerfiles, results):
    commands, envs = [], []
    base_dir = os.path.dirname(path)
    services = (doc or {}).get("services") or {}
    for name, service in services.items():
        if not isinstance(service, dict):
            continue
        context = "%s#%s" % (rel, name)
        env = {}
        # env files, then environment (which wins)
        env_files = service.get("env_file") or []
        if isinstance(env_files, (str, dict)):
            env_files = [env_files]
        for entry in env_files:
            file = entry.get("path") if isinstance(entry, dict) else entry
            full = os.path.normpath(os.path.join(base_dir, file))
            example = full + ".example"
            if os.path.exists(full):
                results.ok("ref", "%s %s" % (rel, name), "env_file %s" % file)
                env.update(read_env_file(full))
            elif os.path.exists(example):
                results.ok("ref", "%s %s" % (rel, name), "env_file %s" % file,
                           "not present; %s.example checked instead" % os.path.basename(file))
                env.update(read_env_file(example))
            else:
                results.fail("ref", "%s %s" % (rel, name), "env_file %s" % file,
                             "neither %s nor %s exists" % (full, example))
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(e.split("=", 1) if "=" in e else (e, "") for e in environment)
        env.update({k: "" if v is None else str(v) for k, v in environment.items()})
        envs.append(("%s %s environment" % (rel, name), env, context))
        # Compose secrets: each one a service names is defined at the top.
        defined = (doc or {}).get("secrets") or {}
        for entry in service.get("secrets") or []:
            secret = entry.get("source") if isinstance(entry, dict) else entry
            if secret in defined:
                results.ok("ref", "%s %s" % (rel, name), "secret %s" % secret)
            else:
                results.fail("ref", "%s %s" % (rel, name), "secret %s" % secret,
                             "not defined under the top-level secrets:")

        fix = lambda v: interpolate_compose(v, {})  # noqa: E731  (defaults of ${VAR:-x})
        image_entry, image_cmd = None, None
        build = service.get("build")
        if isinstance(build, dict):
            ctx = os.path.normpath(os.path.join(base_dir, build.get("context", ".")))
            dockerfile = os.path.normpath(os.path.join(ctx, build.get("dockerfile", "Dockerfile")))
            target = build.get("target")
            drel = os.path.relpath(dockerfile, repo)
            if not os.path.exists(dockerfile):
                results.fail("ref", "%s %s" % (rel, name), "build.dockerfile %s" % drel,
                             "no such file")
            else:
                stages, by_name = dockerfiles.get(dockerfile) or parse_dockerfile(dockerfile)
                stage = by_name.get(target) if target else stages[-1]
                if target and stage is None:
                    results.fail("ref", "%s %s" % (rel, name), "build.target %s" % target,
                                 "%s has no stage named %s (stages: %s)" % (
                                     drel, target, ", ".join(s.name for s in stages if s.name)))
                else:
                    results.ok("ref", "%s %s" % (rel, name),
                               "build %s%s" % (drel, (" target " + target) if target else ""))
                    image_entry, image_cmd = stage.entrypoint, stage.cmd
                    envs.append(("%s %s image ENV (%s)" % (rel, name, target or "last stage"),
                                 dict(stage.env), context))
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else (volume or {}).get("source")
            if isinstance(volume, dict) and volume.get("type") not in (None, "bind"):
                continue
            if source and (source.startswith(".") or source.startswith("/")):
                full = os.path.normpath(os.path.join(base_dir, source))
                if os.path.exists(full):
                    results.ok("ref", "%s %s" % (rel, name), "bind mount %s" % source)
                else:
                    results.fail("ref", "%s %s" % (rel, name), "bind mount %s" % source,
                                 "%s does not exist" % full)

        def as_argv(value):
            if value is None:
                return None
            if isinstance(value, str):
                return shlex.split(fix(value))
            return [fix(str(v)) for v in value]

        entrypoint = as_argv(service.get("entrypoint"))
        command = as_argv(service.get("command"))
        if entrypoint is not None:
            argv = entrypoint + (command or [])   # a compose entrypoint drops the image's CMD
            label = "entrypoint" + ("+command" if command else "")
        else:
            argv = (image_entry or []) + (command if command is not None else (image_cmd or []))
            label = ("image ENTRYPOINT+" if image_entry else "") + ("command" if command is not None else "image CMD")
        found = ours(argv) if argv else None
        if found:
            commands.append(Command("%s %s %s" % (rel, name, label), found, context))
        elif argv and argv[:2] == ["/bin/sh", "-c"]:
            for cmd in commands_of_shell_or_exec(argv, True):
                commands.append(Command("%s %s %s" % (rel, name, label), cmd, context))

        health = (service.get("healthcheck") or {}).get("test")
        if health:
            if isinstance(health, str):
                cmds = [c for c in (ours(x) for x in split_shell(fix(health))) if c]
            elif health[0] == "CMD-SHELL":
                cmds = [c for c in (ours(x) for x in split_shell(fix(" ".join(health[1:])))) if c]
            elif health[0] == "CMD":
                found = ours([fix(str(v)) for v in health[1:]])
                cmds = [found] if found else []
            else:
                cmds = []
            for cmd in cmds:
                commands.append(Command("%s %s healthcheck" % (rel, name), cmd, context))
    for secret, spec in ((doc or {}).get("secrets") or {}).items():
        file = (spec or {}).get("file") if isinstance(spec, dict) else None
        if not file:
            continue
        full = os.path.normpath(os.path.join(base_dir, file))
        if os.path.exists(full):
            results.ok("ref", rel, "secret %s file %s" % (secret, file))
        else:
            # Secrets are made on the machine that runs compose (a script
            # beside the file, into a git-ignored folder), never committed.
            results.skip("ref", rel, "secret %s file %s not present (generated, git-ignored)"
                         % (secret, file))
    return commands, envs


# Compose override files (compose.NAME.yaml beside compose.yaml) are only
# meaningful merged onto the base file, as `docker compose -f compose.yaml
# -f compose.NAME.yaml` merges them: mappings merge, environment variables
# merge by name, command/entrypoint/healthcheck test are replaced, other
# sequences are appended.
COMPOSE_REPLACED = ("command", "entrypoint", "test")


def compose_environment(value):
    if isinstance(value, list):
        return dict(e.split("=", 1) if "=" in e else (e, None) for e in value)
    return dict(value or {})


def merge_compose(base, override, key=None):
    if key == "environment":
        merged = compose_environment(base)
        merged.update(compose_environment(override))
        return merged
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for k, v in override.items():
            merged[k] = merge_compose(base[k], v, k) if k in base else v
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in COMPOSE_REPLACED:
        return base + [v for v in override if v not in base]
    return override


def compose_override_base(path):
    """The compose.yaml an override file applies to, or None."""
    base = os.path.basename(path)
    if base in ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"):
        return None
    if not re.match(r"^(docker-)?compose\.[A-Za-z0-9_.-]+\.ya?ml$", base):
        return None
    for name in ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"):
        candidate = os.path.join(os.path.dirname(path), name)
        if os.path.exists(candidate):
            return candidate
    return None


def read_env_file(path):
    env = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export "):].strip()
        env[key] = value.strip().strip('"').strip("'")
    return env


# --- Kubernetes -------------------------------------------------------------------------
def pod_specs(node):
    """Every object that has a `containers` list (pod specs), recursively."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield node
        for value in node.values():
            yield from pod_specs(value)
    elif isinstance(node, list):
        for value in node:
            yield from pod_specs(value)


def k8s_expand(text, env):
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: env.get(m.group(1), m.group(0)), text)


def image_entrypoint(image, image_entrypoints):
    repo_part = re.sub(r"(@.*|:[^/]*)$", "", image or "")
    return image_entrypoints.get(repo_part.rsplit("/", 1)[-1])


def k8s_commands(rel, doc, image_entrypoints):
    commands, envs = [], []
    kind = doc.get("kind", "?")
    name = (doc.get("metadata") or {}).get("name", "?")
    for spec in pod_specs(doc.get("spec") or {}):
        for group in ("initContainers", "containers"):
            for container in spec.get(group) or []:
                cname = container.get("name", "?")
                where = "%s %s/%s %s" % (rel, kind, name, cname)
                context = "%s#%s/%s/%s" % (rel, kind, name, cname)
                env = {}
                literal = {}
                for item in container.get("env") or []:
                    if isinstance(item, dict) and "name" in item:
                        env[item["name"]] = str(item.get("value", "from-valueFrom"))
                        if "value" in item:
                            literal[item["name"]] = str(item["value"])
                envs.append((where + " env", env, context))
                # $(VAR) of a literal env value is expanded as the kubelet does;
                # one from valueFrom (POD_NAME, a secret) stays as written.
                expand = lambda v: k8s_expand(str(v), literal)  # noqa: E731
                command = [expand(v) for v in container.get("command") or []]
                args = [expand(v) for v in container.get("args") or []]
                if command:
                    argv, label = command + args, "command" + ("+args" if args else "")
                else:
                    entry = image_entrypoint(container.get("image"), image_entrypoints)
                    argv = (entry + args) if entry else []
                    label = "image ENTRYPOINT+args"
                found = ours(argv) if argv else None
                if found:
                    commands.append(Command("%s %s" % (where, label), found, context))
                probes = [(p, container.get(p)) for p in ("startupProbe", "readinessProbe", "livenessProbe")]
                lifecycle = container.get("lifecycle") or {}
                probes += [("lifecycle." + h, lifecycle.get(h)) for h in ("postStart", "preStop")]
                for label, probe in probes:
                    exec_ = (probe or {}).get("exec") or {}
                    found = ours([expand(v) for v in exec_.get("command") or []])
                    if found:
                        commands.append(Command("%s %s" % (where, label), found, context))
    return commands, envs


# Kustomize strategic merge patches (files named in a kustomization's
# patches:) hold only what they change: they are checked merged onto the
# resource they patch (same kind and name), the way kustomize merges them for
# the parts that matter here: mappings merge, a null deletes, lists of named
# items (containers, env, volumes) merge by name, volumeMounts by mountPath,
# other lists are replaced.
def patch_paths(path, doc):
    base_dir = os.path.dirname(path)
    refs = [p["path"] for p in doc.get("patches") or [] if isinstance(p, dict) and p.get("path")]
    refs += [p for p in doc.get("patchesStrategicMerge") or [] if isinstance(p, str)]
    return {os.path.normpath(os.path.join(base_dir, r)) for r in refs}


def merge_key(items):
    for key in ("name", "mountPath", "containerPort", "port"):
        if items and all(isinstance(i, dict) and key in i for i in items):
            return key
    return None


def strategic_merge(base, patch):
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for k, v in patch.items():
            if v is None:
                merged.pop(k, None)
            elif k in base:
                merged[k] = strategic_merge(base[k], v)
            else:
                merged[k] = v
        return merged
    if isinstance(base, list) and isinstance(patch, list):
        key = merge_key(base + patch)
        if key is None:
            return patch
        merged = list(base)
        for item in patch:
            for i, existing in enumerate(merged):
                if existing.get(key) == item.get(key):
                    merged[i] = strategic_merge(existing, item)
                    break
            else:
                merged.append(item)
        return merged
    return patch


def kustomization_refs(repo, rel, path, doc, results):
    base_dir = os.path.dirname(path)
    entries = [("resources", r) for r in doc.get("resources") or []]
    entries += [("components", r) for r in doc.get("components") or []]
    for patch in doc.get("patches") or []:
        if isinstance(patch, dict) and patch.get("path"):
            entries.append(("patches", patch["path"]))
    for key in ("patchesStrategicMerge",):
        entries += [(key, p) for p in doc.get(key) or [] if isinstance(p, str)]
    for key, ref in entries:
        if "://" in ref or ref.startswith("github.com/"):
            continue
        full = os.path.normpath(os.path.join(base_dir, ref))
        if os.path.isdir(full):
            if any(os.path.exists(os.path.join(full, k)) for k in
                   ("kustomization.yaml", "kustomization.yml", "Kustomization")):
                results.ok("ref", rel, "%s %s" % (key, ref))
            else:
                results.fail("ref", rel, "%s %s" % (key, ref), "directory without a kustomization.yaml")
        elif os.path.isfile(full):
            results.ok("ref", rel, "%s %s" % (key, ref))
        else:
            results.fail("ref", rel, "%s %s" % (key, ref), "%s does not exist" % full)


# --- systemd ----------------------------------------------------------------------------
def systemd_commands(repo, rel, path, results):
    """The unit, then its drop-ins (UNIT.d/*.conf beside it), which run in
    the unit's context: their Environment= lines are checked against the
    unit's ExecStart."""
    commands, envs = [], []
    context = rel
    for file in [path] + sorted(glob.glob(path + ".d/*.conf")):
        c, e = systemd_file(repo, os.path.relpath(file, repo), file, context, results)
        commands += c
        envs += e
    return commands, envs


def systemd_file(repo, rel, path, context, results):
    commands, envs = [], []
    text = open(path, encoding="utf-8").read().replace("\\\n", " ")
    for number, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\s*(Exec(?:Start|StartPre|StartPost|Reload|Stop|StopPost|Condition))\s*=\s*(.*)$", line)
        if m:
            value = m.group(2).strip()
            value = re.sub(r"^[-@:+!]+", "", value)
            try:
                argv = shlex.split(value)
            except ValueError:
                argv = value.split()
            found = ours(argv)
            if found:
                commands.append(Command("%s:%d %s" % (rel, number, m.group(1)), found, context))
        m = re.match(r"^\s*EnvironmentFile\s*=\s*-?(.*)$", line)
        if m:
            target = m.group(1).strip()
            # The deployed file is not in the repository: check its example,
            # deploy/systemd/<basename>.example.
            example = os.path.join(os.path.dirname(path), os.path.basename(target) + ".example")
            erel = os.path.relpath(example, repo)
            if os.path.exists(example):
                results.ok("ref", rel, "EnvironmentFile %s" % target, "example %s" % erel)
                envs.append(("%s EnvironmentFile example %s" % (rel, erel), read_env_file(example), context))
            else:
                results.fail("ref", rel, "EnvironmentFile %s" % target,
                             "no example %s in the repository" % erel)
        m = re.match(r"^\s*Environment\s*=\s*(.*)$", line)
        if m:
            try:
                pairs = shlex.split(m.group(1))
            except ValueError:
                pairs = []
            envs.append(("%s:%d Environment" % (rel, number),
                         dict(p.split("=", 1) for p in pairs if "=" in p), context))
    return commands, envs


# --- validating a command line ----------------------------------------------------------
class HelpModel:
    """Flags of one binary, read from its --help output (fallback mode)."""

    # "  --apply TEXT:{auto,manual}=auto (Env:...)", "  -o,--output TEXT:{text,json}=text",
    # "  --reflection (Env:...)" (a flag), "  -v,--verbose      Log debug lines too".
    OPTION = re.compile(r"^\s{2,4}((?:-\w,)?--?[A-Za-z0-9][A-Za-z0-9-]*(?:,--[A-Za-z0-9-]+)*)"
                        r"(?:\s+([A-Z]{2,})(?=[\s:=]|$)(\S*))?")

    def __init__(self, bin_path):
        self.bin_path = bin_path
        self.top = self._parse([])
        self.subcommands = {}
        for sub in self.top["subcommands"]:
            self.subcommands[sub] = self._parse([sub])

    def _help(self, args):
        proc = subprocess.run([self.bin_path] + args + ["--help"], capture_output=True, text=True,
                              timeout=PROBE_TIMEOUT, env=clean_env({}))
        return proc.stdout + proc.stderr

    def _parse(self, args):
        text = self._help(args)
        options, positionals, subcommands = {}, False, []
        section = None
        for line in text.splitlines():
            if re.match(r"^(Options|Positionals|Subcommands):", line):
                section = line.split(":")[0]
                continue
            if not line.startswith(" "):
                section = None if line.strip() else section
                continue
            if section == "Options":
                m = self.OPTION.match(line)
                if not m:
                    continue
                takes_value = bool(m.group(2))
                choices = None
                cm = re.search(r":\{([^}]*)\}", m.group(3) or "")
                if cm:
                    choices = [c.strip() for c in cm.group(1).split(",")]
                for name in m.group(1).split(","):
                    options[name] = (takes_value, choices)
            elif section == "Positionals":
                if re.match(r"^\s{2}\S", line):
                    positionals = True
            elif section == "Subcommands":
                m = re.match(r"^\s{2}([a-z][a-z0-9-]*)\s", line)
                if m:
                    subcommands.append(m.group(1))
        return {"options": options, "positionals": positionals, "subcommands": subcommands}

    def check(self, args):
        """None if args fit the --help output, else the reason."""
        scopes = [self.top]
        i = 0
        while i < len(args):
            token = args[i]
            if token == "--":
                if scopes[-1]["positionals"]:
                    return None
                return "'--' given but %s takes no command" % (
                    "this subcommand" if len(scopes) > 1 else "the program")
            if token.startswith("-") and token != "-":
                name, sep, value = token.partition("=")
                spec = None
                for scope in reversed(scopes):  # subcommand first, then the parent (fallthrough)
                    if name in scope["options"]:
                        spec = scope["options"][name]
                        break
                if spec is None:
                    return "unknown flag %s" % name
                takes_value, choices = spec
                if takes_value and not sep:
                    if i + 1 >= len(args):
                        return "%s needs a value" % name
                    value = args[i + 1]
                    i += 1
                if choices and value not in choices:
                    return "%s %s: not one of %s" % (name, value, ", ".join(choices))
                i += 1
                continue
            if len(scopes) == 1 and token in self.subcommands:
                scopes.append(self.subcommands[token])
                i += 1
                continue
            if scopes[-1]["positionals"]:
                i += 1
                continue
            return "unexpected argument %s" % token
        if self.top["subcommands"] and len(scopes) == 1:
            return "no subcommand (one of %s)" % ", ".join(self.top["subcommands"])
        return None


def clean_env(extra):
    """The environment the binaries run in: no SCHEMAGATE_* or DATABASE_URL
    of the caller leaks in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SCHEMAGATE_") and k != "DATABASE_URL"}
    env.update(extra)
    return env


class Validator:
    def __init__(self, bin_dir, require_parse_only, results):
        self.bin_dir = bin_dir
        self.require_parse_only = require_parse_only
        self.results = results
        self.mode = {}
        self.help = {}
        for name in BINARIES:
            path = os.path.join(bin_dir, name)
            if not os.access(path, os.X_OK):
                self.mode[name] = None
                results.fail("bin", name, path, "not found or not executable (build it first)")
                continue
            rc, out = self.run_parse_only(name, PROBES[name])
            if rc == 0:
                self.mode[name] = "parse-only"
                results.note("%s: SCHEMAGATE_PARSE_ONLY=1 supported; command lines are parsed by the binary" % name)
            elif require_parse_only:
                self.mode[name] = None
                results.fail("bin", name, "SCHEMAGATE_PARSE_ONLY=1 %s" % show([name] + PROBES[name]),
                             "exit %s instead of 0: this build does not support "
                             "SCHEMAGATE_PARSE_ONLY (--require-parse-only)\n%s" % (rc, out.strip()))
            else:
                self.mode[name] = "help"
                self.help[name] = HelpModel(path)
                results.note("%s: this build does not support SCHEMAGATE_PARSE_ONLY (probe exit %s); "
                             "its flags are checked against --help instead" % (name, rc))

    def run_parse_only(self, name, args):
        try:
            proc = subprocess.run([os.path.join(self.bin_dir, name)] + args, capture_output=True,
                                  text=True, timeout=PROBE_TIMEOUT,
                                  env=clean_env({"SCHEMAGATE_PARSE_ONLY": "1"}), stdin=subprocess.DEVNULL)
            return proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired:
            return "timeout", "did not exit within %ds" % PROBE_TIMEOUT

    def check(self, name, args):
        """(ok, detail)."""
        mode = self.mode.get(name)
        if mode is None:
            return False, "binary unavailable"
        if mode == "parse-only":
            rc, out = self.run_parse_only(name, args)
            if rc == 0:
                return True, "parse-only"
            if rc == 2:
                return False, out.strip() or "exit 2"
            return False, "exit %s under SCHEMAGATE_PARSE_ONLY=1 (expected 0 or 2)\n%s" % (rc, out.strip())
        reason = self.help[name].check(args)
        return (reason is None), (reason or "--help")


def env_flag(key):
    return "--" + key[len("SCHEMAGATE_"):].lower().replace("_", "-")


def env_flag_args(cmd, key, value):
    """A command line that sets SCHEMAGATE_FLAG as --flag=value for the same
    binary and subcommand as cmd: `schemagated --flag=v`,
    `schemagate-agent wait --flag=v`, `schemagatectl health --flag=v`."""
    subcommand = []
    if cmd.binary != "schemagated":
        for token in cmd.argv[1:]:
            if token == "--":
                break
            if re.match(r"^[a-z][a-z-]*$", token):
                subcommand = [token]
                break
    return subcommand + [env_flag(key) + "=" + value]


# --- runtime libraries --------------------------------------------------------------------
def path_variants(path):
    """A library path as dpkg may know it (usrmerge: /lib vs /usr/lib)."""
    out = []
    for p in (path, os.path.realpath(path)):
        for q in (p, p[4:] if p.startswith("/usr/") else "/usr" + p):
            if q not in out:
                out.append(q)
    return out


def packages_of(paths):
    """{library path: Debian package} with one `dpkg -S` call."""
    variants = {p: path_variants(p) for p in paths}
    query = sorted({v for vs in variants.values() for v in vs})
    owner = {}
    if query:
        proc = subprocess.run(["dpkg", "-S"] + query, capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            if ": " not in line:
                continue
            package, found = line.rsplit(": ", 1)
            owner[found.strip()] = package.split(",")[0].strip().split(":", 1)[0]
    return {p: next((owner[v] for v in vs if v in owner), None) for p, vs in variants.items()}


def check_runtime_packages(repo, bin_dir, results):
    listfile = os.path.join(repo, "deploy", "docker", "runtime-packages.txt")
    rel = os.path.relpath(listfile, repo)
    if not os.path.exists(listfile):
        results.fail("libs", rel, "runtime package list", "missing")
        return
    if not all(shutil.which(t) for t in ("ldd", "dpkg", "apt-cache")):
        results.skip("libs", rel, "ldd, dpkg or apt-cache not available")
        return
    packages = [line.split("#", 1)[0].strip() for line in open(listfile, encoding="utf-8")]
    packages = [p for p in packages if p]
    proc = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                           "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"]
                          + packages, capture_output=True, text=True)
    if proc.returncode != 0:
        results.fail("libs", rel, "apt-cache depends %s" % " ".join(packages), proc.stderr.strip())
        return
    closure = set()
    for line in proc.stdout.splitlines():
        m = re.match(r"^\s*(?:\|)?(?:Pre)?Depends:\s+<?([^>\s]+)>?", line) or re.match(r"^([^\s<>]+)$", line)
        if m:
            closure.add(m.group(1).split(":", 1)[0])
    missing_listed = [p for p in packages if p not in closure]
    if missing_listed:
        results.fail("libs", rel, "packages exist", "apt knows nothing of: %s" % ", ".join(missing_listed))
    loaded = {}
    for name in BINARIES:
        path = os.path.join(bin_dir, name)
        if os.access(path, os.X_OK):
            out = subprocess.run(["ldd", path], capture_output=True, text=True).stdout
            loaded[name] = re.findall(r"^\s*(\S+)\s+=>\s+(\S+)", out, re.M)
    owners = packages_of({lib for libs in loaded.values() for _, lib in libs if lib != "not"})
    for name, libs in loaded.items():
        needed, unknown = set(), []
        for soname, lib in libs:
            if lib == "not":
                unknown.append("%s (not found on this machine)" % soname)
            elif owners.get(lib) is None:
                unknown.append("%s (%s, not from a Debian package)" % (soname, lib))
            else:
                needed.add(owners[lib])
        uncovered = sorted(p for p in needed if p not in closure)
        what = "%s needs %d packages" % (name, len(needed))
        if uncovered or unknown:
            results.fail("libs", rel, what,
                         ("not provided by the list: %s\n" % ", ".join(uncovered) if uncovered else "")
                         + ("".join("%s\n" % u for u in unknown)))
        else:
            results.ok("libs", rel, what, "all provided by the list and its dependencies")


# --- alert rules -------------------------------------------------------------------------
def check_alert_rules(repo, yaml_docs, promtool, results):
    """promtool check rules on every PrometheusRule's spec, and promtool test
    rules on the tests/*.test.yaml beside it (their rule_files name
    <rule file name>.rules.yaml)."""
    import tempfile
    rules = [(path, doc) for path, docs in yaml_docs.items() for doc in docs
             if isinstance(doc, dict) and doc.get("kind") == "PrometheusRule"]
    for path, doc in rules:
        rel = os.path.relpath(path, repo)
        if not promtool:
            results.skip("rule", rel, "promtool not found (Debian package prometheus)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            stem = os.path.splitext(os.path.basename(path))[0]
            rule_file = os.path.join(tmp, stem + ".rules.yaml")
            with open(rule_file, "w", encoding="utf-8") as out:
                yaml.safe_dump(doc.get("spec") or {}, out, sort_keys=False)
            proc = subprocess.run([promtool, "check", "rules", rule_file], capture_output=True, text=True)
            if proc.returncode == 0:
                results.ok("rule", rel, "promtool check rules", proc.stdout.strip().splitlines()[-1].strip())
            else:
                results.fail("rule", rel, "promtool check rules", proc.stdout + proc.stderr)
            for test in sorted(glob.glob(os.path.join(os.path.dirname(path), "tests", "*.test.yaml"))):
                shutil.copy(test, tmp)
                proc = subprocess.run([promtool, "test", "rules", os.path.basename(test)], cwd=tmp,
                                      capture_output=True, text=True)
                trel = os.path.relpath(test, repo)
                if proc.returncode == 0:
                    results.ok("rule", trel, "promtool test rules")
                else:
                    results.fail("rule", trel, "promtool test rules", proc.stdout + proc.stderr)


# --- main --------------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bin_dir", help="directory with schemagated, schemagate-agent, schemagatectl")
    parser.add_argument("--repo", default=os.path.normpath(os.path.join(os.path.dirname(
        os.path.abspath(__file__)), "..", "..")), help="repository root (default: from this file)")
    parser.add_argument("--require-parse-only", action="store_true",
                        help="fail when a binary does not support SCHEMAGATE_PARSE_ONLY=1")
    parser.add_argument("--no-libs", action="store_true", help="skip the runtime library check")
    parser.add_argument("--promtool", default=shutil.which("promtool"),
                        help="promtool for `check rules` and `test rules` (default: from PATH; "
                             "skipped without it)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)

    repo = os.path.abspath(args.repo)
    bin_dir = os.path.abspath(args.bin_dir)
    deploy = os.path.join(repo, "deploy")
    results = Results(args.verbose)
    print("check_deploy: %s against the binaries in %s" % (deploy, bin_dir))

    all_files = sorted(p for p in glob.glob(os.path.join(deploy, "**", "*"), recursive=True)
                       if os.path.isfile(p))
    rel = lambda p: os.path.relpath(p, repo)  # noqa: E731

    # 1. YAML files parse.
    yaml_docs = {}
    for path in all_files:
        if path.endswith((".yaml", ".yml")):
            try:
                docs = [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d is not None]
                yaml_docs[path] = docs
                results.ok("yaml", rel(path), "parses", "%d document%s" % (len(docs), "" if len(docs) == 1 else "s"))
            except yaml.YAMLError as exc:
                results.fail("yaml", rel(path), "parses", str(exc))

    # 2. Collect command lines and environments.
    commands, envs = [], []
    dockerfiles = {}
    image_entrypoints = {}
    for path in all_files:
        base = os.path.basename(path)
        if base == "Dockerfile" or base.endswith(".Dockerfile") or base.startswith("Dockerfile."):
            stages, by_name = parse_dockerfile(path)
            dockerfiles[path] = (stages, by_name)
            commands += dockerfile_commands(rel(path), path, stages)
            for index, stage in enumerate(stages):
                envs.append(("%s (%s) ENV" % (rel(path), stage.name or "stage %d" % index),
                             dict(stage.env), "%s#%s" % (rel(path), stage.name or "stage %d" % index)))
                if stage.name and stage.entrypoint and binary_of(stage.entrypoint[0]):
                    # images built from this stage are called schemagate/<stage>
                    image_entrypoints[stage.name] = stage.entrypoint
    patches = set()
    for path, docs in yaml_docs.items():
        for doc in docs:
            if isinstance(doc, dict) and (doc.get("kind") == "Kustomization"
                                          or os.path.basename(path).startswith("kustomization.")):
                patches |= patch_paths(path, doc)
    resources = {}   # (kind, name) -> (path, doc) of a resource that is not a patch
    for path, docs in yaml_docs.items():
        if path in patches:
            continue
        for doc in docs:
            if isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc:
                key = (doc["kind"], (doc.get("metadata") or {}).get("name"))
                resources.setdefault(key, (path, doc))
    for path, docs in yaml_docs.items():
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            if path in patches and "apiVersion" in doc and "kind" in doc:
                key = (doc["kind"], (doc.get("metadata") or {}).get("name"))
                if key in resources:
                    base_path, base_doc = resources[key]
                    label = "%s (merged onto %s)" % (rel(path), rel(base_path))
                    results.ok("ref", rel(path), "patches %s/%s of %s" % (key[0], key[1], rel(base_path)))
                    c, e = k8s_commands(label, strategic_merge(base_doc, doc), image_entrypoints)
                    commands += c
                    envs += e
                    continue
            if "services" in doc and (
                    os.path.basename(os.path.dirname(path)) == "compose"
                    or os.path.basename(path) in ("compose.yaml", "compose.yml",
                                                  "docker-compose.yml", "docker-compose.yaml")):
                base = compose_override_base(path)
                if base is not None:
                    base_docs = yaml_docs.get(base) or []
                    if not base_docs:
                        results.fail("ref", rel(path), "override of %s" % rel(base),
                                     "the base file did not parse")
                        continue
                    merged = merge_compose(base_docs[0], doc)
                    label = "%s + %s" % (rel(base), os.path.basename(path))
                    results.ok("ref", rel(path), "override of %s" % rel(base),
                               "checked merged, as `docker compose -f %s -f %s`" % (
                                   os.path.basename(base), os.path.basename(path)))
                    c, e = compose_checks(repo, label, base, merged, dockerfiles, results)
                else:
                    c, e = compose_checks(repo, rel(path), path, doc, dockerfiles, results)
                commands += c
                envs += e
            elif doc.get("kind") == "Kustomization" or os.path.basename(path).startswith("kustomization."):
                kustomization_refs(repo, rel(path), path, doc, results)
            elif "apiVersion" in doc and "kind" in doc:
                c, e = k8s_commands(rel(path), doc, image_entrypoints)
                commands += c
                envs += e
    for path in all_files:
        if path.endswith(".service"):
            c, e = systemd_commands(repo, rel(path), path, results)
            commands += c
            envs += e

    # 3. Validate them with the binaries.
    validator = Validator(bin_dir, args.require_parse_only, results)
    for cmd in commands:
        ok, detail = validator.check(cmd.binary, cmd.argv[1:])
        line = show([cmd.binary] + cmd.argv[1:])
        if ok:
            results.ok("cmd", cmd.where, line, detail if args.verbose else "")
        else:
            results.fail("cmd", cmd.where, line, detail)

    # SCHEMAGATE_* variables: each must be a flag of a command run in the same
    # context (the same container, service or unit).
    by_context = {}
    for cmd in commands:
        by_context.setdefault(cmd.context, []).append(cmd)
    for where, env, context in envs:
        keys = sorted(k for k in env if k.startswith("SCHEMAGATE_") and k != "SCHEMAGATE_PARSE_ONLY")
        if not keys:
            continue
        runs_here = by_context.get(context, [])
        if not runs_here:
            # an image stage whose command is not ours (the agent layer) or a
            # stage that only sets defaults: check against every binary.
            runs_here = [Command(where, [name], context) for name in BINARIES
                         if validator.mode.get(name)]
        for key in keys:
            value = env[key] or "x"
            reasons = []
            for cmd in runs_here:
                ok, detail = validator.check(cmd.binary, env_flag_args(cmd, key, value))
                if ok:
                    given = any(a == env_flag(key) or a.startswith(env_flag(key) + "=")
                                for a in cmd.argv[1:])
                    results.ok("env", where, "%s (a flag of %s)" % (key, cmd.binary),
                               "also given as %s on its command line, which wins" % env_flag(key)
                               if given else "")
                    break
                reasons.append("%s: %s" % (cmd.binary, detail.splitlines()[0] if detail else "rejected"))
            else:
                results.fail("env", where, key, "no command run here accepts --%s:\n%s" % (
                    key[len("SCHEMAGATE_"):].lower().replace("_", "-"), "\n".join(sorted(set(reasons)))))

    # 4. Alert rules, with promtool when it is installed.
    check_alert_rules(repo, yaml_docs, args.promtool, results)

    # 5. Runtime libraries of the images.
    if not args.no_libs:
        check_runtime_packages(repo, bin_dir, results)

    summary = "%d passed, %d failed" % (results.passed, results.failed)
    if results.skipped:
        summary += ", %d skipped" % results.skipped
    print(summary)
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
