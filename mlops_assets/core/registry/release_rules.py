"""The rules that protect a release, as pure functions of the registry's pointer record.

The registry (``mlops_assets.core.registry.registry``) owns the pointer file and calls these under its lock; nothing
here reads or writes a file. Keeping the rules apart from the I/O is what lets every path (CLI, jobs, run config, the
gate, rollback) obey the same ones: there is no second copy to drift.

The rules:

- **The policy lives in the store.** ``require_approval`` is stored in the pointer record, seeded once (and
  recorded as seeded) from the first writing process's ``MLOPS_REQUIRE_APPROVAL``, and changed only by an
  explicit, recorded command. A process configured otherwise is told so and obeys the store.
- **Rejected means never serves** until a new explicit approval of a fresh comparison.
- **Withdrawn means withdrawn**: a version rolled back (or rejected while in production) is never promoted by a
  build; only an explicit reinstate brings it back, and approval still applies.
- **An approval names the production version it was compared with**: it is valid only while that version is
  still in production, so an approval can neither go stale nor be used over another production version.
- **Rollback returns only to a version that may serve**: not rejected, not withdrawn and, with approval required,
  one a reviewer approved or one released while the stored policy did not require approval.
- **Promotion is the last step**: no path (gate, promote, approve, reinstate, rollback) gives traffic to a version
  whose latest release test (its Bento built and its application test run against it, recorded per version with
  who, when and which Bento) did not pass. A version that served before, with no failed test since, counts as
  tested: it passed its test then (or served before this rule existed).
- **A shadow enters like a promotion, but answers no client**: the shadow slot (a challenger scoring the live
  requests production answers, off the request path) takes only a version that may be promoted: not rejected or
  withdrawn, its release test passed (it runs in the serving process, and a comparison with a broken export would
  measure the export), its signature production's unless explicitly overridden. Approval is consent to answer
  clients, so it is given where the shadow becomes production, never bypassed by passing through shadow: with
  approval required, a version enters shadow only while its comparison with today's production is before a
  reviewer (awaiting, or approved), so the shadow's live evidence reaches the person who decides.
- **A challenger answers clients only as a release would** (A/B: a share of the live requests answered by the
  shadow): :func:`why_not_answerable` refuses a version that is not in the shadow slot, was rejected or withdrawn,
  whose latest release test did not pass, or, when the stored policy requires approval, that has no approval of a
  comparison with today's production or a **trial approval** against it. A shadow refused here still shadows; it
  answers no client.
- **A trial approval is consent to an A/B trial, never to a release**: a reviewer lets the version in the shadow
  slot answer its share of clients (recorded: who, when, why, and the production version it was compared with).
  It holds only while that version shadows beside that production (a production change voids it; leaving the slot
  ends it) and never counts as the approval a promotion needs (:func:`why_not_promotable`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

AWAITING, APPROVED, REJECTED = "awaiting", "approved", "rejected"  # the states of a review record
RELEASES = ("promote", "approve", "rollback", "reinstate", "reject")  # event actions that can set production


@dataclass(frozen=True)
class ReleasePolicy:
    """The approval policy in force for one registry: the stored one, or (before anything was stored) the one the
    first write will seed."""

    require_approval: bool
    stored: bool
    set_by: str = ""
    set_at: str = ""
    reason: str = ""

    def describe(self) -> str:
        state = "required" if self.require_approval else "not required"
        if not self.stored:
            return f"approval before release {state} (not stored yet: seeded by the first write to the registry)"
        return f"approval before release {state} (set by {self.set_by} at {self.set_at[:19]}: {self.reason})"


def stored_policy(pointer: dict[str, Any], process_setting: bool | None) -> ReleasePolicy:
    """The policy the registry enforces: the stored one; with none stored yet, what this process would seed."""
    policy = pointer.get("policy")
    if policy is None:
        return ReleasePolicy(bool(process_setting), stored=False)
    return ReleasePolicy(bool(policy["require_approval"]), True, policy.get("set_by", ""), policy.get("set_at", ""),
                         policy.get("reason", ""))


def seeded_policy(process_setting: bool | None, actor: str, at: str,
                  current: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The policy record and its event for a store that has none: seeded from the first writer's setting."""
    value = bool(process_setting)
    source = ("MLOPS_REQUIRE_APPROVAL of the first process that wrote to this registry"
              if process_setting is not None else "the default (no MLOPS_REQUIRE_APPROVAL in the first writer)")
    reason = f"seeded from {source}"
    record = {"require_approval": value, "set_by": actor, "set_at": at, "reason": reason, "seeded": True}
    return record, policy_event(value, None, actor, at, reason, current)


def policy_event(value: bool, before: bool | None, actor: str, at: str, reason: str,
                 current: str | None) -> dict[str, Any]:
    """A policy change, recorded like a transition that leaves production where it is."""
    return {"at": at, "action": "policy", "require_approval": value, "was": before, "actor": actor,
            "reason": reason, "from": current, "to": current}


def policy_conflict(policy: ReleasePolicy, process_setting: bool | None, where: str) -> str | None:
    """What to tell a process whose own setting disagrees with the stored policy (None: they agree)."""
    if not policy.stored or process_setting is None or bool(process_setting) == policy.require_approval:
        return None
    mine = "on" if process_setting else "off"
    return (f"{where} sets require_approval {mine}, but the registry's stored policy is: {policy.describe()}. "
            "The registry's policy applies; change it with `mlops-registry policy --require-approval on|off "
            "--by NAME --reason ...` (recorded)")


def withdrawal(pointer: dict[str, Any], version: str) -> dict[str, Any] | None:
    return pointer.get("withdrawn", {}).get(version)


def review_of(pointer: dict[str, Any], version: str) -> dict[str, Any] | None:
    return pointer.get("reviews", {}).get(version)


def fresh_approval(pointer: dict[str, Any], version: str) -> bool:
    """Approved by a reviewer against the version that is in production now."""
    review = review_of(pointer, version)
    return bool(review) and review["state"] == APPROVED and \
        review.get("production_at_request") == pointer.get("current")


def released_without_approval_requirement(pointer: dict[str, Any], version: str) -> bool:
    """Whether ``version`` reached production while the stored policy did not require approval. Events written
    before the policy was stored carry no such field: those count only for a version that was never under review
    (a version that was awaiting a reviewer and reached production anyway bypassed the review)."""
    for event in pointer.get("events", []):
        if event.get("to") != version or event.get("action") not in RELEASES or event.get("from") == version:
            continue
        if event.get("approval_required") is False:
            return True
        if "approval_required" not in event and review_of(pointer, version) is None:
            return True
    return False


def may_serve_again(pointer: dict[str, Any], version: str, require_approval: bool) -> bool:
    """Whether rollback (or a rejection of production) may return production to ``version``."""
    review = review_of(pointer, version)
    if withdrawal(pointer, version) or (review and review["state"] == REJECTED) or why_not_tested(pointer, version):
        return False
    if not require_approval:
        return True
    return bool(review and review["state"] == APPROVED) or released_without_approval_requirement(pointer, version)


def rollback_target(pointer: dict[str, Any], require_approval: bool, leaving: str | None) -> str | None:
    """The most recent earlier production version that may serve again (never ``leaving``)."""
    for version in reversed(pointer.get("history", [])):
        if version != leaving and may_serve_again(pointer, version, require_approval):
            return version
    return None


def release_test_of(pointer: dict[str, Any], version: str) -> dict[str, Any] | None:
    """The latest release test recorded for ``version`` (passed or not), or None."""
    return pointer.get("release_tests", {}).get(version)


def served_before(pointer: dict[str, Any], version: str) -> bool:
    return any(e.get("to") == version and e.get("action") in RELEASES and e.get("from") != version
               for e in pointer.get("events", []))


def why_not_tested(pointer: dict[str, Any], version: str) -> str | None:
    """Why ``version`` may not receive traffic yet for want of a passed release test (None: it may)."""
    test = release_test_of(pointer, version)
    if test and test["passed"]:
        return None
    if test:
        return (f"its release test failed ({test['by']} at {test['at'][:19]}, Bento {test['bento_tag']}: "
                f"{test['reason']}); production stays as it is until a release test of it passes")
    if served_before(pointer, version):
        return None
    return ("it has no release test: traffic goes only to a version whose Bento was built and passed its "
            "application test (build_job or retrain_job does both, then releases it)")


def why_not_releasable(pointer: dict[str, Any], version: str) -> str | None:
    """Why no promotion (gate, CLI, job) may put ``version`` in production, whatever the policy (None: it may)."""
    review = review_of(pointer, version)
    if review and review["state"] == REJECTED:
        return (f"it was rejected by {review['reviewed_by']} ({review['review_reason']}); a rejected version serves "
                f"only after a new explicit approval: compare it with today's production (compare_model_job, "
                f"version {version}), then `mlops-registry approve {version} --by NAME --reason ...`")
    withdrawn = withdrawal(pointer, version)
    if withdrawn:
        return (f"it was withdrawn from production by {withdrawn['by']} at {withdrawn['at'][:19]} "
                f"({withdrawn['reason']}); "
                f"no build or promotion brings it back: `mlops-registry reinstate {version} --by NAME --reason ...` "
                "does, explicitly (approval still applies)")
    return None


RELEASE_POLICIES = ("production", "shadow")  # MLOPS_RELEASE_POLICY: where the gate's yes sends a tested version


def release_to_shadow(release_policy: str) -> bool:
    """Whether the gate's yes sends a version to the shadow slot first (``shadow``) or to production
    (``production``, the default); any other value is refused, naming the choices."""
    if release_policy not in RELEASE_POLICIES:
        raise ValueError(f"release policy {release_policy!r} is not one of {', '.join(RELEASE_POLICIES)} "
                         "(MLOPS_RELEASE_POLICY)")
    return release_policy == "shadow"


def under_fresh_review(pointer: dict[str, Any], version: str) -> bool:
    """A comparison of ``version`` with today's production is before a reviewer (awaiting, or approved)."""
    review = review_of(pointer, version)
    return bool(review) and review["state"] in (AWAITING, APPROVED) and \
        review.get("production_at_request") == pointer.get("current")


def approval_state(pointer: dict[str, Any], version: str) -> str:
    """Where ``version`` stands with its reviewers, in words a person can act on."""
    review = review_of(pointer, version)
    if not review:
        return "not approved (no approval was requested for it)"
    current = pointer.get("current")
    if review["state"] == AWAITING:
        if review.get("production_at_request") != current:
            return (f"awaiting approval of a comparison with {review.get('production_at_request')}, but production "
                    f"is now {current}: compare it again (compare_model_job, version {version}), then approve")
        return (f"awaiting approval since {review['requested_at'][:19]}: approve it with "
                f"`mlops-registry approve {version} --by NAME --reason ...` or review_model_job")
    if review["state"] == REJECTED:
        return f"rejected by {review['reviewed_by']} ({review['review_reason']})"
    if review.get("production_at_request") != current:
        return (f"approved by {review['reviewed_by']} against production {review.get('production_at_request')}, "
                f"but production is now {current}: the approval is stale; compare it again (compare_model_job, "
                f"version {version}), then approve")
    return f"approved by {review['reviewed_by']}"


def why_not_answerable(pointer: dict[str, Any], version: str) -> str | None:
    """Why ``version`` may not answer clients from the shadow slot (an A/B arm), None when it may: it must be the
    shadow, not rejected or withdrawn, with a passed release test and, when the stored policy requires approval,
    an approval against today's production. Every serving process asks this on each change of the pointer."""
    shadow = (pointer.get("slots") or {}).get("shadow")  # model_versions' SLOTS_KEY and SHADOW_SLOT (it imports us)
    if shadow != version:
        return f"{version} is not in the shadow slot (the shadow is {shadow or 'empty'})"
    why = why_not_releasable(pointer, version) or why_not_tested(pointer, version)
    if why:
        return f"{version} only shadows: {why}"
    policy = pointer.get("policy") or {}
    if policy.get("require_approval") and not fresh_approval(pointer, version) and \
            not fresh_trial_approval(pointer, version):
        return (f"{version} only shadows: approval before release is required (the registry's stored policy) and it "
                f"is {approval_state(pointer, version)}; {trial_approval_state(pointer, version)}")
    return None


TRIAL_KEY = "trial_approval"  # the pointer's record of the shadow's trial approval (one shadow, one trial)


def trial_approval_of(pointer: dict[str, Any], version: str) -> dict[str, Any] | None:
    trial = pointer.get(TRIAL_KEY)
    return trial if trial and trial.get("version") == version else None


def fresh_trial_approval(pointer: dict[str, Any], version: str) -> bool:
    """A reviewer let ``version`` answer its A/B share of clients, against the version in production now."""
    trial = trial_approval_of(pointer, version)
    return bool(trial) and trial.get("production") == pointer.get("current")


def trial_approval_state(pointer: dict[str, Any], version: str) -> str:
    """Where ``version``'s trial approval stands, in words a person can act on."""
    trial = trial_approval_of(pointer, version)
    command = f"`mlops-registry approve-trial {version} --by NAME --reason ...` (or review_model_job, approve-trial)"
    if not trial:
        return f"no trial approval lets it answer clients from the shadow slot: {command}"
    if trial.get("production") != pointer.get("current"):
        return (f"its trial approval by {trial['by']} was given against production {trial.get('production')}, but "
                f"production is now {pointer.get('current')}: the trial approval is void; give a new one: {command}")
    return f"trial-approved by {trial['by']} against production {trial['production']} (answers clients only)"


def why_not_promotable(pointer: dict[str, Any], version: str) -> str | None:
    """Why a promotion would refuse ``version`` now (None: it would not): rejected, withdrawn, untested or, with
    approval required, without an approval of a comparison with today's production. A trial approval never
    counts here: it lets a shadow answer some clients, it does not release it."""
    why = why_not_releasable(pointer, version) or why_not_tested(pointer, version)
    if why:
        return why
    if (pointer.get("policy") or {}).get("require_approval") and not fresh_approval(pointer, version):
        trial = " (a trial approval lets it answer its A/B share only)" if trial_approval_of(pointer, version) else ""
        return (f"approval before release is required (the registry's stored policy) and it is "
                f"{approval_state(pointer, version)}{trial}")
    return None
