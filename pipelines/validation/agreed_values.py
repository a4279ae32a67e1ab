"""Agreed categories: a mart column keeps a delivered value only if the agreement lists it.

A contract lists each categorical column's agreed values (its `invalidValues` rules). A row
whose value is not one of them is either quarantined with its row, or, where the agreement
says so, kept with a breach: the crimes under a misspelt category still happened. Kept, it
must not become a category of its own in what analysts and the board read (`Theft`,
`Theft ` and `THEFT` are one category and two mistakes), so the marts put every such value
in one group, `NOT_AGREED`, and the pack draws that group apart, with a note saying how many
rows it holds and which rule of the agreement they break.

The test is the contract's own, exactly as the row checks apply it: a value is agreed when
it is, character for character, one of the agreed values (a trailing space or a change of
case is not). The categories come from the contract, never from the data.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.contract import Contract, ValueRule

NOT_AGREED = "Not an agreed value"


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class AgreedCategory:
    """A mart column whose values are those a contract agrees for `columns`, or NOT_AGREED.

    `columns` are the contract's columns the value comes from (the twenty tactic columns of
    use of force share one list); `label` names the category in a sentence.
    """

    mart_column: str
    contract: str
    columns: tuple[str, ...]
    label: str

    def rules(self, contracts: dict[str, Contract]) -> list[ValueRule]:
        """The agreement's value rules on the columns (none when the contract is unknown)."""
        contract = contracts.get(self.contract)
        if contract is None:
            return []
        names = {c.name for c in contract.columns}
        return [r for c in self.columns if c in names for r in contract.column(c).value_rules]

    def values(self, contracts: dict[str, Contract]) -> tuple[str, ...] | None:
        """The agreed values, in the agreement's order (None: the agreement lists none, so
        every value stands)."""
        rules = self.rules(contracts)
        if not rules:
            return None
        agreed = set.intersection(*(set(r.valid_values) for r in rules))
        return tuple(v for v in rules[0].valid_values if v in agreed)

    def sql(self, expr: str, contracts: dict[str, Contract], blank: str | None = None) -> str:
        """SQL giving `expr` if it is an agreed value, else NOT_AGREED; a blank value (NULL or
        empty, which the agreement's value rules let through) is `blank` when given."""
        agreed = self.values(contracts)
        whens = []
        if blank is not None:
            whens.append(f"WHEN {expr} IS NULL OR {expr} = '' THEN {_lit(blank)}")
        if agreed is not None:
            listed = ", ".join(_lit(v) for v in agreed) or "NULL"
            whens.append(f"WHEN {expr} IN ({listed}) THEN {expr}")
            whens.append(f"WHEN {expr} IS NOT NULL THEN {_lit(NOT_AGREED)}")
        if not whens:
            return expr
        return f"(CASE {' '.join(whens)} ELSE {expr} END)"

    def note(self, contracts: dict[str, Contract], counted: str) -> str:
        """The data-quality note for the rest group: how many (`counted`, e.g. "12 searches
        in the 12 months"), what is wrong with them, and which rule of the agreement."""
        rules = self.rules(contracts)
        agreed = self.values(contracts) or ()
        names = list(dict.fromkeys(r.name for r in rules))
        kept = {r.on_failure for r in rules} == {"keep"}
        order = ("minor", "major", "critical")
        severity = max((r.severity for r in rules), key=order.index, default="minor")
        rule = names[0] if len(names) == 1 else f"{names[0]} to {names[-1]} (one per column)"
        rule = rule if names else "(none)"
        title = self.contract.replace("_", " ").capitalize()
        action = "keeps such rows" if kept else "holds such rows back"
        return (
            f"{NOT_AGREED}: {counted} had a {self.label} that is not one of the "
            f"{len(agreed)} the {title} agreement lists (a misspelling, another case or a stray "
            f"space is enough). The agreement {action} and raises a {severity} breach of rule "
            f"{rule}; they are counted here as one group, never as categories of their own."
        )
