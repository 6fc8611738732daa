"""Every list issued for a campaign, remembered so that its lift can be measured later.

A campaign is one product of one bank. It holds one or more issued lists, each keyed by
the parameters it was drawn with (product, branch, manager, top, ranking): a branch's list
and a manager's list of the same campaign are two lists of one campaign, and their
customers share the campaign's arms (the control draw hashes campaign and customer).
Issuing a list whose parameters were issued before returns the stored rows unchanged
(the same customers, ranks and arms, even after a new model); an issued list is never
rewritten. A bank's own randomised campaign enters through :meth:`CampaignStore.import_file`.

Layout under ``Workspace.campaigns_dir`` (campaign ids are free text, so each folder is a
slug of the id plus a hash of it)::

    <slug>-<hash>/campaign.json      id, product, bank and every issued list's parameters
    <slug>-<hash>/<list key>.parquet the rows of one issued list (ISSUED_COLUMNS)

Writers take an exclusive ``flock`` on ``campaigns/.lock`` (service workers are processes);
files are written beside their target and renamed into place, so readers need no lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from nbp.errors import DataContractError, NbpError
from nbp.jobs import atomic_write

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: one process at a time
    fcntl = None  # type: ignore[assignment]

ARMS = ("treatment", "control")
RANKINGS = ("propensity", "uplift", "value")
# The columns of every stored list, in this order; score = the calibrated propensity.
ISSUED_COLUMNS = [
    "campaign_id",
    "bank_code",
    "product",
    "list_key",
    "list_date",
    "issued_at",
    "model_version",
    "rank_by",
    "customer_id",
    "branch_id",
    "manager_id",
    "score",
    "uplift",
    "expected_value",
    "rank",
    "arm",
]
IMPORT_COLUMNS = ["campaign_id", "product", "list_date", "customer_id", "arm"]
MAX_CAMPAIGN_ID = 64
_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


class CampaignConflict(NbpError):
    """A campaign id already belongs to another product or bank, or an import restates an issued list."""


@dataclass(frozen=True)
class ListParams:
    """What a list was drawn with; equal parameters within a campaign mean the same list."""

    product: str
    branch_id: str | None = None
    manager_id: str | None = None
    top: int | None = None  # None: an imported assignment (every customer of the campaign)
    rank_by: str = "propensity"
    source: str = "nbp"  # nbp: drawn by nbp; import: a bank's own randomised campaign

    def key(self) -> str:
        """A short stable key of the parameters (the list's file name)."""
        text = json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)
        return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


def check_campaign_id(campaign_id: object) -> str:
    """A campaign id must be non-empty printable text of at most 64 characters.

    Raises:
        DataContractError: otherwise (the message says which rule).
    """
    if not isinstance(campaign_id, str) or not campaign_id.strip():
        raise DataContractError("campaign id: empty; name the campaign, e.g. consumer-202611")
    if len(campaign_id) > MAX_CAMPAIGN_ID or not campaign_id.isprintable():
        raise DataContractError(f"campaign id: at most {MAX_CAMPAIGN_ID} printable characters")
    return campaign_id


def folder_name(campaign_id: str) -> str:
    """The campaign's folder: a readable slug of the id and a hash of the exact id."""
    slug = _SLUG.sub("_", campaign_id)[:40].strip("_") or "campaign"
    return f"{slug}-{hashlib.blake2b(campaign_id.encode('utf-8'), digest_size=6).hexdigest()}"


class CampaignStore:
    """The issued campaigns of one bank's workspace (``Workspace.campaigns_dir``)."""

    def __init__(self, root: Path, bank_code: str | None = None) -> None:
        self.root = root
        self.bank_code = bank_code

    # ------------------------------------------------------------------ reading
    def _meta_path(self, campaign_id: str) -> Path:
        return self.root / folder_name(campaign_id) / "campaign.json"

    def meta(self, campaign_id: str) -> dict | None:
        """The campaign's record (id, product, bank, lists), or None if never issued."""
        path = self._meta_path(campaign_id)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataContractError(f"{path}: unreadable campaign record ({e})") from e
        if record.get("campaign_id") != campaign_id:  # a hash collision would be astonishing; never mix
            raise DataContractError(f"{path}: holds campaign {record.get('campaign_id')!r}, not {campaign_id!r}")
        return record

    def campaigns(self) -> list[dict]:
        """Every campaign's record, oldest first issue first."""
        if not self.root.is_dir():
            return []
        out = []
        for p in sorted(self.root.glob("*/campaign.json")):
            try:
                out.append(json.loads(p.read_text(encoding="utf-8")))
            except (OSError, ValueError) as e:
                raise DataContractError(f"{p}: unreadable campaign record ({e})") from e
        return sorted(out, key=lambda r: (r["lists"][0]["issued_at"] if r["lists"] else "", r["campaign_id"]))

    def lookup(self, campaign_id: str, params: ListParams) -> pd.DataFrame | None:
        """The stored rows of the list issued with ``params``, or None if it was never issued."""
        record = self.meta(campaign_id)
        if record is None:
            return None
        key = params.key()
        if not any(item["list_key"] == key for item in record["lists"]):
            return None
        return self._read_list(campaign_id, key)

    def _read_list(self, campaign_id: str, key: str) -> pd.DataFrame:
        path = self.root / folder_name(campaign_id) / f"{key}.parquet"
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as e:
            raise DataContractError(f"{path}: issued list of campaign {campaign_id!r} unreadable ({e})") from e

    def issued(self, campaign_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Every stored row of the named campaigns (None: all), ``ISSUED_COLUMNS``.

        A customer on several lists of one campaign appears once per list; :func:`first_issue`
        keeps each customer's first.
        """
        wanted = None if campaign_ids is None else set(campaign_ids)
        parts = []
        for record in self.campaigns():
            if wanted is not None and record["campaign_id"] not in wanted:
                continue
            parts += [self._read_list(record["campaign_id"], item["list_key"]) for item in record["lists"]]
        if wanted:
            unknown = wanted - {r["campaign_id"] for r in self.campaigns()}
            if unknown:
                raise DataContractError(
                    f"no issued campaign {', '.join(sorted(map(repr, unknown)))} in {self.root}; "
                    "`nbp campaign list` shows the campaigns"
                )
        if not parts:
            return _empty()
        return pd.concat(parts, ignore_index=True)[ISSUED_COLUMNS]

    # ------------------------------------------------------------------ writing
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+b") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if fcntl is not None:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def issue(
        self,
        campaign_id: str,
        params: ListParams,
        rows: pd.DataFrame,
        *,
        list_date: date,
        model_version: int | None,
        issued_at: datetime | None = None,
    ) -> tuple[pd.DataFrame, bool]:
        """Remember one list; if the same list was issued before, return that one instead.

        Args:
            rows: ``customer_id, branch_id, manager_id, score, rank, arm`` and optionally
                ``uplift, expected_value``; one row per customer.

        Returns:
            ``(stored rows, new)``: ``new`` is False when the list had been issued before
            (by this or another process), whose rows are returned unchanged.

        Raises:
            CampaignConflict: the campaign id was issued for another product or bank.
            DataContractError: a bad campaign id, or rows that break the columns' rules.
        """
        check_campaign_id(campaign_id)
        frame = self._frame(campaign_id, params, rows, list_date, model_version, issued_at)
        key = params.key()
        with self._locked():
            record = self.meta(campaign_id) or {
                "campaign_id": campaign_id,
                "product": params.product,
                "bank_code": self.bank_code,
                "lists": [],
            }
            self._check_owner(record, params)
            if any(item["list_key"] == key for item in record["lists"]):
                return self._read_list(campaign_id, key), False
            folder = self.root / folder_name(campaign_id)
            with atomic_write(folder / f"{key}.parquet") as tmp:
                frame.to_parquet(tmp, index=False)
            record["lists"].append(
                {
                    "list_key": key,
                    "params": asdict(params),
                    "list_date": list_date.isoformat(),
                    "issued_at": frame["issued_at"].iloc[0].isoformat() if len(frame) else _now().isoformat(),
                    "model_version": model_version,
                    "treatment": int((frame["arm"] == "treatment").sum()),
                    "control": int((frame["arm"] == "control").sum()),
                }
            )
            with atomic_write(folder / "campaign.json") as tmp:
                tmp.write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
        return frame, True

    def _check_owner(self, record: dict, params: ListParams) -> None:
        cid = record["campaign_id"]
        if record["product"] != params.product:
            raise CampaignConflict(
                f"campaign {cid!r} was issued for product '{record['product']}', not '{params.product}'; "
                "use another campaign id / 该营销活动已用于其他产品，请换一个活动编号"
            )
        if record.get("bank_code") != self.bank_code:
            raise CampaignConflict(f"campaign {cid!r} belongs to bank {record.get('bank_code')!r}")
        if params.source == "import" and record["lists"]:
            raise CampaignConflict(
                f"campaign {cid!r} is already recorded ({len(record['lists'])} list(s)); "
                "an imported assignment is never merged into or over an issued campaign"
            )

    def _frame(
        self,
        campaign_id: str,
        params: ListParams,
        rows: pd.DataFrame,
        list_date: date,
        model_version: int | None,
        issued_at: datetime | None,
    ) -> pd.DataFrame:
        missing = [c for c in ("customer_id", "arm") if c not in rows.columns]
        if missing:
            raise DataContractError(f"campaign {campaign_id!r}: list rows lack column(s) {', '.join(missing)}")
        bad = ~rows["arm"].isin(ARMS)
        if bad.any():
            raise DataContractError(
                f"campaign {campaign_id!r}: arm must be treatment or control (row {int(bad.to_numpy().argmax()) + 1})"
            )
        dup = rows["customer_id"].astype(str).duplicated()
        if dup.any():
            raise DataContractError(
                f"campaign {campaign_id!r}: customer {rows['customer_id'].astype(str)[dup].iloc[0]!r} "
                "appears twice in one list"
            )
        n = len(rows)
        stamp = pd.Timestamp(issued_at or _now())
        if stamp.tzinfo is not None:  # stored as UTC without a zone
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        out = pd.DataFrame(
            {
                "campaign_id": pd.Series([campaign_id] * n, dtype=object),
                "bank_code": pd.Series([self.bank_code] * n, dtype=object),
                "product": params.product,
                "list_key": params.key(),
                "list_date": pd.Series([pd.Timestamp(list_date)] * n, dtype="datetime64[us]"),
                "issued_at": pd.Series([stamp] * n, dtype="datetime64[us]"),
                "model_version": pd.array([model_version] * n, dtype="Int64"),
                "rank_by": params.rank_by,
                "customer_id": rows["customer_id"].astype(str).to_numpy(),
            }
        )
        for col in ("branch_id", "manager_id"):
            out[col] = rows[col].astype(object).where(rows[col].notna(), None).to_numpy() if col in rows else None
        for col in ("score", "uplift", "expected_value"):
            out[col] = pd.to_numeric(rows[col], errors="coerce").to_numpy(float) if col in rows else float("nan")
        out["rank"] = pd.array(rows["rank"], dtype="Int64") if "rank" in rows else pd.array([pd.NA] * n, "Int64")
        out["arm"] = rows["arm"].to_numpy(object)
        return out[ISSUED_COLUMNS]

    def import_file(
        self, path: Path, known_customers: set[str] | None = None, products: set[str] | None = None
    ) -> list[str]:
        """Record a bank's own randomised campaigns from an assignment file.

        The file (UTF-8 CSV with a header) has the columns ``IMPORT_COLUMNS``:
        ``campaign_id, product, list_date (YYYY-MM-DD), customer_id, arm
        (treatment|control)``; several campaigns may share one file, each one product and
        one date. A campaign already recorded is refused, never merged.

        Args:
            known_customers: the bank's customer ids; a row naming another is refused.
            products: the configured product keys; a row naming another is refused.

        Returns:
            The campaign ids recorded.

        Raises:
            DataContractError: a missing column or a row that breaks a rule (file, row, rule).
            CampaignConflict: a campaign id already recorded.
        """
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except (OSError, ValueError, UnicodeDecodeError) as e:
            raise DataContractError(f"{path}: not a readable UTF-8 CSV ({e})") from e
        missing = [c for c in IMPORT_COLUMNS if c not in df.columns]
        if missing:
            raise DataContractError(f"{path}: missing column(s) {', '.join(missing)}; expected {IMPORT_COLUMNS}")
        if df.empty:
            raise DataContractError(f"{path}: no rows")

        def fail(mask: pd.Series, rule: str) -> None:
            if mask.any():
                row = int(mask.to_numpy().argmax()) + 2  # the header is line 1
                raise DataContractError(f"{path}, line {row}: {rule}")

        for col in IMPORT_COLUMNS:
            fail(df[col].str.strip() == "", f"{col} is empty")
        fail(~df["arm"].isin(ARMS), "arm must be treatment or control")
        dates = pd.to_datetime(df["list_date"], format="%Y-%m-%d", errors="coerce")
        fail(dates.isna(), "list_date must be a date YYYY-MM-DD")
        fail(df["campaign_id"].str.len() > MAX_CAMPAIGN_ID, f"campaign_id longer than {MAX_CAMPAIGN_ID} characters")
        if products is not None:
            fail(~df["product"].isin(products), f"product must be one of {', '.join(sorted(products))}")
        if known_customers is not None:
            fail(~df["customer_id"].isin(known_customers), "customer_id is not a customer of this bank")
        fail(df.duplicated(["campaign_id", "customer_id"]), "customer listed twice in one campaign")
        for col in ("product", "list_date"):
            mixed = df.groupby("campaign_id")[col].transform("nunique") > 1
            fail(mixed, f"one campaign must have one {col}")
        done = []
        for cid, part in df.groupby("campaign_id", sort=True):
            params = ListParams(product=str(part["product"].iloc[0]), source="import")
            self.issue(
                str(cid),
                params,
                part[["customer_id", "arm"]].reset_index(drop=True),
                list_date=dates[part.index[0]].date(),
                model_version=None,
            )
            done.append(str(cid))
        return done


def first_issue(rows: pd.DataFrame) -> pd.DataFrame:
    """Each customer's first issued row per campaign (lists of one campaign may overlap)."""
    ordered = rows.sort_values(["campaign_id", "issued_at", "list_key"], kind="stable")
    return ordered.drop_duplicates(["campaign_id", "customer_id"], keep="first").reset_index(drop=True)


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in ISSUED_COLUMNS})
