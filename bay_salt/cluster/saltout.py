"""Reading what Salt returns (``--out=json --static``) into plain summaries."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ApplySummary:
    minion: str
    states: int = 0
    changed: int = 0
    failed: list[str] = field(default_factory=list)
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed


def summarize_apply(ret: dict) -> dict[str, ApplySummary]:
    """One summary per minion of a ``state.apply`` return.

    A minion that answered with a list (render errors) or a string (an
    exception) counts as failed with those messages.
    """
    out: dict[str, ApplySummary] = {}
    for minion, result in ret.items():
        summary = ApplySummary(minion)
        if isinstance(result, dict):
            for state_id, st in result.items():
                summary.states += 1
                summary.duration_ms += float(st.get("duration", 0) or 0)
                if st.get("changes"):
                    summary.changed += 1
                if st.get("result") is False:
                    summary.failed.append(f"{st.get('__id__', state_id)}: {st.get('comment', '')}".strip())
        elif isinstance(result, list):
            summary.failed.extend(str(x) for x in result)
        else:
            summary.failed.append(str(result))
        out[minion] = summary
    return out
