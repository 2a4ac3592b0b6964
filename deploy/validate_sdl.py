#!/usr/bin/env python3
"""Validates Akash SDL files the way Akash does, and farm's SDL files against farm's tier table.

Three layers, each a reason to reject a file:

1. YAML, read with a loader that takes only true/false as booleans (YAML 1.1 loaders turn `on`, `off`, `yes`
   and `no` into booleans; Akash's Go parser does not) and that refuses duplicate keys.
2. Akash's own JSON Schema (draft-07), `../shared/akash/sdl-input.schema.json` beside this repository.
3. The semantic rules of Akash's Go parser that no schema can express (see shared/akash/README.md).

With `--tiers JSON` (the output of `farm tiers --json`, inline or as a file), farm's own SDL files are checked
against the tier table too: the render node sized at its tier, the coordinator's lease and data volume, the
ports the command line listens on, the token in the environment, pricing in uact.

    deploy/validate_sdl.py deploy/akash-*.yaml --tiers "$(farm tiers --json)"
    deploy/validate_sdl.py --expect-invalid ../shared/akash/fixtures/invalid/*.yaml

Prints one line per file ("accepted: FILE" or "rejected: FILE: reasons") and a summary line; exits 0 when every
file was accepted (or, with --expect-invalid, rejected), 1 otherwise, 2 when it cannot run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from decimal import Decimal, InvalidOperation
from typing import Any

try:
    import jsonschema
    import yaml
except ImportError as error:  # pragma: no cover - reported to the caller, who decides to skip
    print(f"validate_sdl.py: cannot run: {error} (install python3-jsonschema and python3-yaml)", file=sys.stderr)
    sys.exit(2)

NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei)?$")
SIZE_FACTORS = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
PERSISTENT_CLASSES = {"beta1", "beta2", "beta3", "default"}
GIB = 2**30


# ---------------------------------------------------------------------------------------------------------------
# YAML


class SDLLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans (only true/false) and no duplicate keys."""


SDLLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
SDLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def _mapping_without_duplicates(loader: SDLLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


SDLLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_sdl(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=SDLLoader)  # noqa: S506 - SDLLoader is a SafeLoader


# ---------------------------------------------------------------------------------------------------------------
# Values


def size_bytes(value: Any) -> int | None:
    """Bytes of an SDL size ("12Gi", "512Mi", "1024"); None when it is not a binary size."""
    if not isinstance(value, str):
        return None
    match = SIZE.match(value)
    if not match:
        return None
    return int(Decimal(match.group(1)) * SIZE_FACTORS[match.group(2)])


def cpu_units(value: Any) -> Decimal | None:
    """Cores of an SDL cpu.units (2, 0.5, "2", "500m")."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return Decimal(str(value))
        if isinstance(value, str):
            if value.endswith("m"):
                return Decimal(value[:-1]) / 1000
            return Decimal(value)
    except InvalidOperation:
        return None
    return None


def gpu_units(resources: dict[str, Any]) -> Decimal:
    gpu = resources.get("gpu") or {}
    units = gpu.get("units", 0)
    try:
        return Decimal(str(units))
    except InvalidOperation:
        return Decimal(0)


def is_true(value: Any) -> bool:
    return value is True or value == "true"


def volumes(resources: dict[str, Any]) -> list[dict[str, Any]]:
    """The storage entries of a profile, each with its name (an unnamed volume is called "default")."""
    storage = resources.get("storage")
    entries = storage if isinstance(storage, list) else [storage] if isinstance(storage, dict) else []
    result = []
    for entry in entries:
        attributes = entry.get("attributes") or {}
        result.append(
            {
                "name": entry.get("name", "default"),
                "size": entry.get("size"),
                "persistent": is_true(attributes.get("persistent")),
                "class": attributes.get("class"),
            }
        )
    return result


def exposes(service: dict[str, Any]) -> list[dict[str, Any]]:
    return service.get("expose") or []


# ---------------------------------------------------------------------------------------------------------------
# Semantic rules of Akash's parser


def semantic_errors(sdl: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    services: dict[str, Any] = sdl.get("services") or {}
    compute: dict[str, Any] = sdl["profiles"].get("compute") or {}
    placements: dict[str, Any] = sdl["profiles"].get("placement") or {}
    deployment: dict[str, Any] = sdl.get("deployment") or {}
    endpoints: dict[str, Any] = sdl.get("endpoints") or {}
    version = sdl.get("version")

    for kind, names in (
        ("service", services),
        ("compute profile", compute),
        ("placement", placements),
        ("endpoint", endpoints),
    ):
        for name in names:
            if not NAME.match(str(name)):
                errors.append(f"{kind} name {name!r} does not match {NAME.pattern}")

    # Every deployment entry names a defined service, compute profile and a placement that prices it.
    for service_name, entries in deployment.items():
        if service_name not in services:
            errors.append(f"deployment.{service_name}: no such service")
        for placement_name, entry in (entries or {}).items():
            profile = entry.get("profile")
            if placement_name not in placements:
                errors.append(f"deployment.{service_name}.{placement_name}: no such placement")
            elif profile not in (placements[placement_name].get("pricing") or {}):
                errors.append(
                    f"deployment.{service_name}.{placement_name}: placement does not price profile {profile!r}"
                )
            if profile not in compute:
                errors.append(f"deployment.{service_name}.{placement_name}: no such compute profile {profile!r}")

    # Every service is deployed.
    for service_name in services:
        if not deployment.get(service_name):
            errors.append(f"services.{service_name}: not deployed")

    # Sizes use binary suffixes; GPU attributes go with units > 0 (and back); CPU units are positive.
    for profile_name, profile in compute.items():
        resources = profile.get("resources") or {}
        memory = (resources.get("memory") or {}).get("size")
        if size_bytes(memory) is None:
            errors.append(f"profiles.compute.{profile_name}: memory size {memory!r} is not a binary size like 12Gi")
        for volume in volumes(resources):
            if size_bytes(volume["size"]) is None:
                errors.append(
                    f"profiles.compute.{profile_name}: storage {volume['name']!r} size {volume['size']!r}"
                    " is not a binary size like 50Gi"
                )
        names = [volume["name"] for volume in volumes(resources)]
        for name in sorted({name for name in names if names.count(name) > 1}):
            errors.append(f"profiles.compute.{profile_name}: storage name {name!r} is used twice")
        cpu = cpu_units((resources.get("cpu") or {}).get("units"))
        if cpu is None or cpu <= 0:
            errors.append(f"profiles.compute.{profile_name}: cpu units must be positive")
        gpu = resources.get("gpu")
        if gpu is not None:
            has_attributes = bool(gpu.get("attributes"))
            if gpu_units(resources) > 0 and not has_attributes:
                errors.append(f"profiles.compute.{profile_name}: gpu units > 0 need vendor attributes")
            if has_attributes and gpu_units(resources) <= 0:
                errors.append(f"profiles.compute.{profile_name}: gpu attributes need units > 0")
        for volume in volumes(resources):
            if volume["class"] == "ram" and volume["persistent"]:
                errors.append(f"profiles.compute.{profile_name}: ram volume {volume['name']!r} cannot be persistent")
            if volume["persistent"] and volume["class"] not in PERSISTENT_CLASSES:
                errors.append(
                    f"profiles.compute.{profile_name}: persistent volume {volume['name']!r} needs a class"
                    f" ({', '.join(sorted(PERSISTENT_CLASSES))})"
                )

    # Storage parameters name volumes of the service's profiles, at unique absolute mounts; persistent volumes
    # are mounted; tee needs version 2.1, and cpu-gpu needs a GPU.
    for service_name, service in services.items():
        profiles = [
            compute[entry.get("profile")]
            for entry in (deployment.get(service_name) or {}).values()
            if entry.get("profile") in compute
        ]
        params = service.get("params") or {}
        storage_params: dict[str, Any] = params.get("storage") or {}
        mounts: dict[str, str] = {}
        for volume_name, volume_params in storage_params.items():
            mount = (volume_params or {}).get("mount")
            if not isinstance(mount, str) or not mount.startswith("/"):
                errors.append(f"services.{service_name}.params.storage.{volume_name}: mount must be an absolute path")
            elif mount in mounts:
                errors.append(
                    f"services.{service_name}.params.storage.{volume_name}: mount {mount} is already used by"
                    f" {mounts[mount]!r}"
                )
            else:
                mounts[mount] = volume_name
        for profile in profiles:
            profile_volumes = {volume["name"]: volume for volume in volumes(profile.get("resources") or {})}
            for volume_name in storage_params:
                if volume_name not in profile_volumes:
                    errors.append(
                        f"services.{service_name}.params.storage.{volume_name}: no such volume in the service's profile"
                    )
            for volume in profile_volumes.values():
                if volume["persistent"] and not (storage_params.get(volume["name"]) or {}).get("mount"):
                    errors.append(
                        f"services.{service_name}: persistent volume {volume['name']!r} needs"
                        f" params.storage.{volume['name']}.mount"
                    )
        tee = params.get("tee")
        if tee is not None and version != "2.1":
            errors.append(f"services.{service_name}.params.tee needs SDL version 2.1")
        if tee == "cpu-gpu":
            for profile in profiles:
                if gpu_units(profile.get("resources") or {}) <= 0:
                    errors.append(f"services.{service_name}: tee cpu-gpu needs a GPU in the service's profile")

    # Exposures: targets exist, every endpoint is used, an IP endpoint port is used once, something is global.
    used_endpoints: set[str] = set()
    endpoint_ports: dict[tuple[str, int, str], str] = {}
    global_exposures = 0
    for service_name, service in services.items():
        for dependency in service.get("dependencies") or []:
            if dependency.get("service") not in services:
                errors.append(f"services.{service_name}.dependencies: no such service {dependency.get('service')!r}")
        for expose in exposes(service):
            external = expose.get("as", expose.get("port"))
            proto = str(expose.get("proto", "tcp")).lower()
            for target in expose.get("to") or []:
                if target.get("global") is True:
                    global_exposures += 1
                if "service" in target and target["service"] not in services:
                    errors.append(f"services.{service_name}.expose: no such service {target['service']!r}")
                ip = target.get("ip")
                if ip:
                    if ip not in endpoints:
                        errors.append(f"services.{service_name}.expose: no such endpoint {ip!r}")
                    used_endpoints.add(ip)
                    key = (ip, external, proto)
                    if key in endpoint_ports and endpoint_ports[key] != service_name:
                        errors.append(
                            f"services.{service_name}.expose: endpoint {ip!r} port {external}/{proto} is already"
                            f" used by {endpoint_ports[key]!r}"
                        )
                    endpoint_ports[key] = service_name
    for endpoint in endpoints:
        if endpoint not in used_endpoints:
            errors.append(f"endpoints.{endpoint}: declared but not used by any service")
    if global_exposures == 0:
        errors.append("no service exposes anything globally")

    # One pricing denomination across the file.
    denoms = {
        price.get("denom")
        for placement in placements.values()
        for price in (placement.get("pricing") or {}).values()
    }
    if len(denoms) > 1:
        errors.append(f"pricing uses more than one denomination: {', '.join(sorted(map(str, denoms)))}")
    return errors


# ---------------------------------------------------------------------------------------------------------------
# farm's tier table


def load_tiers(argument: str) -> dict[str, dict[str, Any]]:
    if argument.lstrip().startswith(("{", "[")):
        text = argument
    else:
        with open(argument, encoding="utf-8") as handle:
            text = handle.read()
    table = json.loads(text)
    rows = table["tiers"] if isinstance(table, dict) else table
    return {row["tier"]: row for row in rows}


def farm_role(service: dict[str, Any]) -> tuple[str | None, list[str]]:
    """("coordinator" | "node" | None, the farm arguments after the subcommand) of a service."""
    words = [str(word) for word in (service.get("command") or []) + (service.get("args") or [])]
    if words and os.path.basename(words[0]) == "farm":
        words = words[1:]
    if words and words[0] in ("coordinator", "node"):
        return words[0], words[1:]
    return None, words


def option(arguments: list[str], name: str) -> str | None:
    for index, word in enumerate(arguments):
        if word == name and index + 1 < len(arguments):
            return arguments[index + 1]
        if word.startswith(name + "="):
            return word[len(name) + 1 :]
    return None


def port_of(address: str | None) -> int | None:
    if not address or ":" not in address:
        return None
    try:
        return int(address.rsplit(":", 1)[1])
    except ValueError:
        return None


def env_names(service: dict[str, Any]) -> set[str]:
    return {str(entry).split("=", 1)[0] for entry in service.get("env") or []}


def tier_errors(path: str, sdl: dict[str, Any], tiers: dict[str, dict[str, Any]]) -> list[str]:
    errors: list[str] = []
    services: dict[str, Any] = sdl["services"]
    compute: dict[str, Any] = sdl["profiles"]["compute"]
    placements: dict[str, Any] = sdl["profiles"]["placement"]
    deployment: dict[str, Any] = sdl["deployment"]

    if sdl.get("version") != "2.0":
        errors.append(f"farm's SDL files use version 2.0, not {sdl.get('version')!r}")
    roles = {name: farm_role(service) for name, service in services.items()}
    coordinators = [name for name, (role, _) in roles.items() if role == "coordinator"]
    nodes = [name for name, (role, _) in roles.items() if role == "node"]
    if not nodes:
        errors.append("no service runs `farm node`")
    if len(coordinators) > 1:
        errors.append(f"more than one coordinator service: {', '.join(coordinators)}")
    for name in coordinators + nodes:
        # `command` would replace the image's entrypoint, which starts farm as its unprivileged user.
        if services[name].get("command"):
            errors.append(f"services.{name}: set `args`, not `command` (the image's entrypoint must run)")
        # Nodes reach the coordinator across the internet: the node channel stays TLS.
        if "--insecure-plain-tcp" in roles[name][1]:
            errors.append(f"services.{name}: --insecure-plain-tcp would send segments unencrypted between leases")
    if len({services[name]["image"] for name in coordinators + nodes}) > 1:
        errors.append("the coordinator and the nodes run one image")

    file_tier = None
    match = re.search(r"akash-(budget|standard|highperf)\.ya?ml$", os.path.basename(path))
    if match:
        file_tier = match.group(1)
        if not coordinators:
            errors.append(f"a tier file ({os.path.basename(path)}) needs a coordinator service")
    named_tiers = {option(arguments, "--tier") for role, arguments in roles.values() if role}
    if None in named_tiers:
        errors.append("every farm service needs --tier")
    named_tiers.discard(None)
    if len(named_tiers) > 1:
        errors.append(f"services name different tiers: {', '.join(sorted(named_tiers))}")
    tier_name = file_tier or (next(iter(named_tiers)) if named_tiers else None)
    if file_tier and named_tiers and named_tiers != {file_tier}:
        errors.append(f"the file is for tier {file_tier} but its services say --tier {', '.join(sorted(named_tiers))}")
    if tier_name not in tiers:
        errors.append(f"unknown tier {tier_name!r} (farm tiers knows {', '.join(tiers)})")
        return errors
    tier = tiers[tier_name]

    for placement_name, placement in placements.items():
        for profile, price in (placement.get("pricing") or {}).items():
            if price.get("denom") != "uact":
                errors.append(f"placement {placement_name} prices {profile} in {price.get('denom')!r}, not uact")

    def profiles_of(service_name: str) -> list[tuple[str, dict[str, Any], int]]:
        return [
            (entry["profile"], compute[entry["profile"]]["resources"], entry.get("count", 0))
            for entry in (deployment.get(service_name) or {}).values()
            if entry.get("profile") in compute
        ]

    def check_size(where: str, what: str, actual: Any, expected_gib: int) -> None:
        if size_bytes(actual) != expected_gib * GIB:
            errors.append(f"{where}: {what} is {actual!r}, the {tier_name} tier says {expected_gib}Gi")

    # Render nodes: sized at the tier, dialling the coordinator, with the token.
    for name in nodes:
        service = services[name]
        _, arguments = roles[name]
        if "FARM_JOIN_TOKEN" not in env_names(service):
            errors.append(f"services.{name}: FARM_JOIN_TOKEN is not in env")
        coordinator_address = option(arguments, "--coordinator")
        if not coordinator_address:
            errors.append(f"services.{name}: farm node needs --coordinator")
        for profile, resources, count in profiles_of(name):
            where = f"profiles.compute.{profile}"
            if count < 1:
                errors.append(f"deployment.{name}: count must be at least 1")
            if cpu_units(resources["cpu"]["units"]) != Decimal(tier["cpu"]):
                errors.append(f"{where}: cpu is {resources['cpu']['units']!r}, the {tier_name} tier says {tier['cpu']}")
            check_size(where, "memory", resources["memory"]["size"], tier["memoryGiB"])
            node_volumes = volumes(resources)
            ephemeral = [volume for volume in node_volumes if not volume["persistent"] and volume["class"] != "ram"]
            total = sum(size_bytes(volume["size"]) or 0 for volume in ephemeral)
            if total != tier["storageGiB"] * GIB:
                errors.append(
                    f"{where}: ephemeral storage is {total / GIB:g}Gi, the {tier_name} tier says {tier['storageGiB']}Gi"
                )
            if gpu_units(resources) != Decimal(tier["gpu"]):
                errors.append(f"{where}: gpu units are {gpu_units(resources)}, the {tier_name} tier says {tier['gpu']}")
            if tier["gpu"] > 0:
                vendor = ((resources.get("gpu") or {}).get("attributes") or {}).get("vendor") or {}
                if "nvidia" not in vendor:
                    errors.append(f"{where}: the {tier_name} tier's GPU is an NVIDIA GPU (for NVENC)")

    # The coordinator: its lease, its data volume at --data-dir, its ports exposed as farm needs them.
    for name in coordinators:
        service = services[name]
        _, arguments = roles[name]
        if "FARM_JOIN_TOKEN" not in env_names(service):
            errors.append(f"services.{name}: FARM_JOIN_TOKEN is not in env")
        for profile, resources, count in profiles_of(name):
            where = f"profiles.compute.{profile}"
            if count != 1:
                errors.append(f"deployment.{name}: a farm has exactly one coordinator (count {count})")
            if cpu_units(resources["cpu"]["units"]) != Decimal(tier["coordinatorCPU"]):
                errors.append(
                    f"{where}: cpu is {resources['cpu']['units']!r}, the {tier_name} tier says {tier['coordinatorCPU']}"
                )
            check_size(where, "memory", resources["memory"]["size"], tier["coordinatorMemoryGiB"])
            coordinator_volumes = volumes(resources)
            ephemeral = [volume for volume in coordinator_volumes if not volume["persistent"]]
            persistent = [volume for volume in coordinator_volumes if volume["persistent"]]
            if len(ephemeral) != 1:
                errors.append(f"{where}: the coordinator has one ephemeral (root) volume")
            else:
                check_size(where, "ephemeral storage", ephemeral[0]["size"], tier["coordinatorStorageGiB"])
            if len(persistent) != 1:
                errors.append(f"{where}: the coordinator keeps its data on one persistent volume")
                continue
            data = persistent[0]
            check_size(where, f"persistent volume {data['name']!r}", data["size"], tier["coordinatorDataGiB"])
            mount = ((service.get("params") or {}).get("storage") or {}).get(data["name"], {}).get("mount")
            data_dir = option(arguments, "--data-dir")
            if not data_dir or mount is None or os.path.normpath(data_dir) != os.path.normpath(mount):
                errors.append(f"services.{name}: --data-dir {data_dir!r} is not the persistent volume's mount {mount!r}")

        http_port = port_of(option(arguments, "--http"))
        node_port = port_of(option(arguments, "--node-listen"))
        if http_port is None:
            errors.append(f"services.{name}: farm coordinator needs --http HOST:PORT")
        if node_port is None:
            errors.append(f"services.{name}: farm coordinator needs --node-listen HOST:PORT")
        http_exposed = any(
            expose.get("port") == http_port
            and expose.get("as") == 80
            and any(target.get("global") is True for target in expose.get("to") or [])
            for expose in exposes(service)
        )
        if http_port is not None and not http_exposed:
            errors.append(f"services.{name}: the HTTP port {http_port} must be exposed globally `as: 80`")
        node_exposures = [expose for expose in exposes(service) if expose.get("port") == node_port]
        targets = [target for expose in node_exposures for target in expose.get("to") or []]
        if node_port is not None:
            if any(str(expose.get("proto", "tcp")).lower() != "tcp" for expose in node_exposures):
                errors.append(f"services.{name}: the node port {node_port} is TCP")
            if not any(target.get("global") is True for target in targets):
                errors.append(f"services.{name}: the node port {node_port} must be global (nodes on other leases)")
            for node in nodes:
                if not any(target.get("service") == node for target in targets):
                    errors.append(f"services.{name}: the node port {node_port} must be exposed to service {node}")
                address = option(roles[node][1], "--coordinator")
                if address and address != f"{name}:{node_port}":
                    errors.append(f"services.{node}: --coordinator {address} is not {name}:{node_port}")
    return errors


# ---------------------------------------------------------------------------------------------------------------


def validate(path: str, validator: jsonschema.Draft7Validator, tiers: dict[str, dict[str, Any]] | None) -> list[str]:
    try:
        sdl = load_sdl(path)
    except (OSError, yaml.YAMLError) as error:
        return [f"not readable as YAML: {error}".replace("\n", " ")]
    schema_errors = sorted(validator.iter_errors(sdl), key=lambda error: list(error.absolute_path))
    if schema_errors:
        return [
            f"schema: {'.'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
            for error in schema_errors
        ]
    errors = semantic_errors(sdl)
    if not errors and tiers is not None:
        errors = tier_errors(path, sdl, tiers)
    return errors


def main(argv: list[str]) -> int:
    here = os.path.dirname(os.path.abspath(__file__))
    default_schema = os.path.normpath(os.path.join(here, "..", "..", "shared", "akash", "sdl-input.schema.json"))
    parser = argparse.ArgumentParser(description="Validate Akash SDL files (schema, Akash's semantic rules, farm's tiers).")
    parser.add_argument("files", nargs="+", help="SDL files")
    parser.add_argument("--schema", default=default_schema, help=f"Akash's JSON Schema (default {default_schema})")
    parser.add_argument("--tiers", help="the output of `farm tiers --json`, inline or as a file: check farm's tier files")
    parser.add_argument("--expect-invalid", action="store_true", help="succeed only if every file is rejected")
    arguments = parser.parse_args(argv)

    try:
        with open(arguments.schema, encoding="utf-8") as handle:
            schema = json.load(handle)
        tiers = load_tiers(arguments.tiers) if arguments.tiers else None
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"validate_sdl.py: cannot run: {error}", file=sys.stderr)
        return 2
    validator = jsonschema.Draft7Validator(schema)

    accepted = rejected = 0
    for path in arguments.files:
        errors = validate(path, validator, tiers)
        if errors:
            rejected += 1
            print(f"rejected: {path}: " + "; ".join(errors))
        else:
            accepted += 1
            print(f"accepted: {path}")
    print(f"{accepted} accepted, {rejected} rejected")
    if arguments.expect_invalid:
        return 0 if accepted == 0 else 1
    return 0 if rejected == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
