"""`mlops-registry`: list model versions, promote one, roll back production, approve or reject a version, set a shadow.

Reads the same settings as Dagster and the Bento service (BENTOML_HOME, MLOPS_MODEL_NAME), so it acts on the
registry they use. The rules (approval, rejection, withdrawal) are the registry's own: the approval policy is
stored with the registry and changed only by `mlops-registry policy` (recorded); MLOPS_REQUIRE_APPROVAL only seeds
a registry that has none, and a shell whose setting disagrees is told so. No Dagster import: it answers in well
under a second.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mlops_assets.core.registry.registry import ModelRegistry, RegistryError


def _registry(args: argparse.Namespace) -> ModelRegistry:
    from mlops_assets.core.common.settings import (
        BENTOML_HOME,
        MODEL_NAME,
        REQUIRE_APPROVAL,
        is_set,
        resolve,
        resolve_flag,
    )

    # this shell's setting only seeds a registry without a stored policy; unset, it has no say at all
    setting = resolve_flag(REQUIRE_APPROVAL) if is_set(REQUIRE_APPROVAL) else None
    return ModelRegistry(args.home or resolve(BENTOML_HOME), args.model or resolve(MODEL_NAME),
                         require_approval=setting)


def _actor() -> str:
    """Who made a manual transition, for the history: the login name on this machine."""
    import getpass

    try:
        return f"mlops-registry ({getpass.getuser()})"
    except (KeyError, OSError):
        return "mlops-registry"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlops-registry", description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="BentoML home (default: $BENTOML_HOME or ./.mlops/bentoml)")
    parser.add_argument("--model", help="model name (default: $MLOPS_MODEL_NAME or image_classifier)")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="all versions, newest first, with their stage")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    commands.add_parser("production", help="the version in production")
    promote = commands.add_parser("promote", help="make VERSION the production model")
    promote.add_argument("version")
    promote.add_argument("--reason", default="manual promotion (mlops-registry)")
    rollback = commands.add_parser("rollback", help="return to the previous production version")
    rollback.add_argument("--reason", default="manual rollback (mlops-registry)")
    approve = commands.add_parser("approve", help="approve VERSION (awaiting approval): it becomes production")
    reject = commands.add_parser(
        "reject", help="reject VERSION: it never serves; rejecting production withdraws it to the previous version")
    reinstate = commands.add_parser(
        "reinstate", help="bring back a withdrawn VERSION (production, or a candidate when approval is required)")
    trial = commands.add_parser(
        "approve-trial", help="let the shadow VERSION answer its A/B share of clients although approval is required "
        "(recorded; void once production changes; it does not promote)")
    for command in (approve, reject, reinstate, trial):
        command.add_argument("version")
        command.add_argument("--by", required=True, help="the reviewer's name, recorded in the history")
        command.add_argument("--reason", required=True, help="why, recorded in the history")
    policy = commands.add_parser("policy", help="show the stored approval policy, or change it (recorded)")
    policy.add_argument("--require-approval", choices=["on", "off"], help="the new policy")
    policy.add_argument("--by", help="who changes it (required with --require-approval)")
    policy.add_argument("--reason", help="why (required with --require-approval)")
    shadow = commands.add_parser(
        "shadow", help="put VERSION in the shadow slot (it scores live requests, answers no client), --clear it, or "
        "show it")
    shadow.add_argument("version", nargs="?", help="the challenger (omitted: show the shadow)")
    shadow.add_argument("--clear", action="store_true", help="empty the shadow slot")
    shadow.add_argument("--reason", help="why, recorded in the history (required to set or clear)")
    for command in (promote, rollback, approve, reinstate, shadow):
        command.add_argument(
            "--allow-incompatible", action="store_true",
            help="replace production even with a version of other classes or input geometry (explicit only)",
        )
    commands.add_parser("awaiting", help="versions awaiting a reviewer's approval, with the gate's reason")
    commands.add_parser("history", help="promotions, rollbacks and reviews, oldest first")
    args = parser.parse_args(argv)
    registry = _registry(args)
    if not registry.exists():
        from mlops_assets.core.common.settings import BENTOML_HOME, is_set

        source = "--home" if args.home else f"${BENTOML_HOME}" if is_set(BENTOML_HOME) else (
            f"the default, ./.mlops/bentoml under {Path.cwd()}")
        print(f"mlops-registry: no model registry at {registry.store_path} (from {source}); run it in the "
              f"project after `make demo`, or point --home or {BENTOML_HOME} at the registry", file=sys.stderr)
        return 2
    conflict = registry.policy_conflict("this shell (MLOPS_REQUIRE_APPROVAL)")
    if conflict and args.command not in ("list", "production", "history", "awaiting"):
        print(f"mlops-registry: note: {conflict}", file=sys.stderr)
    try:
        return _run(args, registry)
    except RegistryError as exc:
        print(f"mlops-registry: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, registry: ModelRegistry) -> int:
    """Carry out one command; a refusal raises :class:`RegistryError` with the reason."""
    actor = _actor()
    if args.command == "list":
        versions = registry.list_versions()
        if args.json:
            print(json.dumps([v.__dict__ for v in versions], indent=2, default=str))
        if not versions and not args.json:
            print(f"no versions of {registry.model_name} in {registry.store_path}", file=sys.stderr)
        if versions and not args.json:
            print("accuracy: each version on its own test split (splits differ, so these figures are not "
                  "comparable); gate: the candidate and production on the same images, as the gate compared them")
        for v in [] if args.json else versions:
            why = (f"  ({v.withdrawn['action']} by {v.withdrawn['by']}: {v.withdrawn['reason']})" if v.withdrawn
                   else f"  (by {v.review['reviewed_by']}: {v.review['review_reason']})"
                   if v.stage == "rejected" else "")
            print(f"{v.version}  {v.stage:<19}  {v.created[:19]}  {figures_text(v)}{why}")
    elif args.command == "production":
        current = registry.production()
        print(current.tag if current else "no production model")
    elif args.command == "promote":
        promoted = registry.promote(args.version, args.reason, actor=actor,
                                    allow_incompatible=args.allow_incompatible)
        print(f"production is now {promoted.tag}")
    elif args.command == "rollback":
        before = registry.production_version()
        restored = registry.rollback(args.reason, actor=actor, allow_incompatible=args.allow_incompatible)
        print(f"rolled back: production is now {restored.tag}; {before} is withdrawn (it comes back only by "
              f"`mlops-registry reinstate {before} --by NAME --reason ...`)")
    elif args.command == "approve":
        approved = registry.approve(args.version, args.by, args.reason, allow_incompatible=args.allow_incompatible)
        print(f"approved by {args.by}: production is now {approved.tag}")
    elif args.command == "approve-trial":
        record = registry.approve_trial(args.version, args.by, args.reason)
        print(f"trial approved by {args.by}: shadow {registry.tag(args.version)} may answer its A/B share of clients "
              f"(MLOPS_AB_FRACTION) beside production {record['production']}; promoting it still needs "
              f"`mlops-registry approve {args.version} --by NAME --reason ...`")
    elif args.command == "reject":
        serving = registry.production_version() == args.version
        rejected = registry.reject(args.version, args.by, args.reason)
        if serving:
            print(f"rejected by {args.by}: {rejected.tag} is withdrawn from production; production is now "
                  f"{registry.production_version()}")
        else:
            print(f"rejected by {args.by}: {rejected.tag} stays out of production")
        cleared = registry.events()[-1].get("shadow_cleared")
        if cleared:  # rejecting the challenger is the one command that also ends its shadowing (recorded)
            print(cleared)
    elif args.command == "reinstate":
        reinstated = registry.reinstate(args.version, args.by, args.reason,
                                        allow_incompatible=args.allow_incompatible)
        print(f"reinstated by {args.by}: " + (
            f"production is now {reinstated.tag}" if reinstated.stage == "production" else
            f"{reinstated.tag} is a candidate again; {registry.approval_state(args.version)}"))
    elif args.command == "shadow":
        _shadow(args, registry, actor)
    elif args.command == "policy":
        if args.require_approval is not None:
            if not args.by or not args.reason:
                raise RegistryError("to change the approval policy, say who you are (--by) and why (--reason)")
            registry.set_policy(args.require_approval == "on", args.by, args.reason)
        print(registry.policy().describe())
    elif args.command == "awaiting":
        waiting = registry.awaiting_approval()
        if not waiting:
            print("no version awaits approval")
        for v in waiting:
            review = v.review or {}
            print(f"{v.version}  requested {review.get('requested_at', '')[:19]} by "
                  f"{review.get('requested_by', 'unknown')}: {review.get('request_reason', '')}")
    elif args.command == "history":
        for event in registry.events():
            print(history_line(event))
    return 0


def _shadow(args: argparse.Namespace, registry: ModelRegistry, actor: str) -> None:
    """Show, set or clear the shadow slot; setting and clearing need a reason (recorded)."""
    if args.version is None and not args.clear:
        shadow = registry.shadow_version()
        print(registry.tag(shadow) if shadow else "no shadow model")
        return
    if args.version is not None and args.clear:
        raise RegistryError("give either a VERSION to put in shadow or --clear, not both")
    if not args.reason or not args.reason.strip():
        raise RegistryError("say why (--reason): the shadow slot's changes are recorded in the history")
    if args.clear:
        cleared = registry.clear_shadow(args.reason, actor=actor)
        print(f"cleared the shadow slot (was {registry.tag(cleared)})" if cleared else "no shadow model to clear")
        return
    shadowed = registry.set_shadow(args.version, args.reason, actor=actor, allow_incompatible=args.allow_incompatible)
    print(f"shadow is now {shadowed.tag} (production stays {registry.tag(registry.production_version())}): it "
          "scores the requests production answers and answers no client; promote or approve it to release it")


def figures_text(version) -> str:
    """The version's accuracy with the split it was measured on, and the gate's same-images comparison if any:
    three versions' own figures can fall while each beat its predecessor on the images they shared."""
    metrics = version.metadata.get("metrics", {})
    accuracy, n = metrics.get("accuracy"), metrics.get("n")
    split = str(version.labels.get("splits_version") or "unknown")[:8]
    text = (f"accuracy={accuracy:.4f} on its own test split {split}" + (f" ({n} images)" if n else "")
            if isinstance(accuracy, float) else "accuracy=-")
    gate = version.metadata.get("gate") or {}
    if isinstance(gate.get("candidate"), float) and isinstance(gate.get("production"), float):
        text += (f"; gate: {gate['candidate']:.4f} vs {gate['compared_with']} {gate['production']:.4f} "
                 f"on the same {gate['rows']} images")
    return text


def history_line(event: dict) -> str:
    """One event of the registry's history: what moved, who, why, under which approval, and any override."""
    if event["action"] == "policy":
        was = "" if event.get("was") is None else f" (was {'on' if event['was'] else 'off'})"
        moved = f"require_approval {'on' if event['require_approval'] else 'off'}{was}"
    elif "version" in event:
        moved = f"{event['version']} (production {event['to']})"
    else:
        moved = f"{event['from']} → {event['to']}"
    line = f"{event['at'][:19]}  {event['action']:<16}  {moved}  by {event.get('actor', 'unknown')}: {event['reason']}"
    if event.get("approval"):
        line += f"  [approval: {event['approval']}]"
    if event.get("incompatible_override"):
        line += f"  [incompatible override: {'; '.join(event['incompatible_override'])}]"
    if event.get("shadow_cleared"):
        line += f"  [shadow cleared: {event['shadow_cleared']}]"
    return line


if __name__ == "__main__":
    sys.exit(main())
