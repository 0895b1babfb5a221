"""TikTok's answer codes, each in one of five classes: policy as data.

Source of the codes: every constant of `NumericErrorCodes` in TikTok's own SDK,
tiktok/tiktok-business-api-sdk `python_sdk/business_api_client/tiktok_business/tiktok_code.py`
(163 codes; the list is kept in `tests/contract/tiktok_sdk_codes.txt` and a test holds this table
to exactly it). TikTok publishes no meaning beyond the constant's name; where another public source
says more, the row names it:
- rudderlabs/rudder-transformer `src/v0/destinations/tiktok_ads/networkHandler.js` (0 and 20001
  success, 40100 throttled, 40001 and 40002 aborted) and its `test/integrations/destinations/
  tiktok_ads/network.ts` (40002 "Batch.0.properties.contents.0.content_id: Not a valid string",
  a per-event parameter error; 40001 "No permission to operate ...");
- tiktok/tiktok-business-android-sdk `business-core/src/main/java/com/tiktok/appevents/
  TTRequest.java` (40000 and 20001: the batch is discarded, never retried);
- bububa/tiktok-business `model/event/track.go` (app events through Events API 2.0 are
  allowlist-only: 40118 NOT_IN_WHITELIST is a setup answer; more than 1,000 events reject the
  whole request: 40061 INVALID_BATCH_SIZE).
Codes of other Marketing API areas (creatives, files, TCM) are not expected from `/event/track/`;
each still has a class so that no SDK code is left to the unlisted rule.

The classes: `delivered` (OK), `throttled` (retried, pacing lowered, Retry-After honoured),
`transient` (retried with backoff; server-side codes may have been processed), `setup` (nothing
the events can fix until an operator acts: the partner app is held), `bad_event` (the batch is
split until the bad event is alone, which is dead-lettered). A code in no class is transient.
"""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType


class AnswerClass(StrEnum):
    """What a TikTok answer code means for the events of the request."""

    DELIVERED = "delivered"
    THROTTLED = "throttled"
    TRANSIENT = "transient"
    SETUP = "setup"
    BAD_EVENT = "bad_event"


_D, _TH, _TR, _S, _B = (
    AnswerClass.DELIVERED, AnswerClass.THROTTLED, AnswerClass.TRANSIENT, AnswerClass.SETUP,
    AnswerClass.BAD_EVENT,
)  # fmt: skip

CODE_OK = 0
CODE_PARTIAL_OK = 20001

ANSWER_CLASSES: MappingProxyType[int, AnswerClass] = MappingProxyType({
    0: _D,  # OK
    # PARTIAL_OK: accepted, some events refused; no public source shows a body naming them
    # (Rudder: success; Android SDK: discarded, not retried), so the batch counts as delivered
    20001: _D,
    40000: _B,  # INVALID_PARAMS (Android SDK: discarded, not retried)
    40001: _S,  # PERMISSION_ERROR (Rudder's message: not an admin or operator of the account)
    40002: _B,  # PARAM_ERROR (Rudder's message names one event's field)
    40003: _S,  # FORBIDDEN
    40006: _S,  # VERSION_ERROR
    40007: _S,  # NOT_EXIST: most likely the event_source_id (TikTok App ID)
    40008: _S,  # NOT_IMPL
    40009: _S,  # UNSUPPORTED_IN_SANDBOX
    40010: _S,  # UNSUPPORTED_DOMAIN
    40011: _B,  # ID_LIMIT_EXCEED: too many ids in one request; a smaller batch fixes it
    40012: _B,  # NO_UPDATE (not an event answer)
    40013: _S,  # SANDBOX_ADV_NOT_EXIST
    40014: _S,  # INVALID_CLUSTER: the account lives in another region than the host
    # BIZ_FC_ERROR: "FC" read as flow control (inferred from the name alone; no source says)
    40016: _TH,
    40050: _D,  # DUPLICATED_REQUEST: already processed; sending again adds nothing
    40051: _S,  # INVALID_API_VERSION
    40052: _B,  # ACO_MATERIAL_EXIST (creatives)
    40053: _B,  # VIDEO_ID_INVALID_ERROR (creatives)
    40061: _B,  # INVALID_BATCH_SIZE: halving the batch fixes it (bububa: > 1,000 events)
    40062: _B,  # PII_NOT_HASHED
    40063: _S,  # INVALID_PARTNER_NAME
    40100: _TH,  # REQUEST_TOO_FREQUENT (Rudder: ThrottledError)
    40101: _S,  # INVALID_PARTNER
    40102: _S,  # ACCESS_TOKEN_EXPIRE
    40103: _S,  # REFRESH_TOKEN_EXPIRE
    40104: _S,  # EMPTY_ACCESS_TOKEN
    40105: _S,  # INVALID_ACCESS_TOKEN
    40106: _S,  # INVALID_CORE_USER
    40107: _S,  # INVALID_REFRESH_TOKEN
    40108: _S,  # INVALID_GRANT_TYPE
    40109: _S,  # ERROR_AES_DECIPHER
    40110: _S,  # AUTH_CODE_ERROR
    40112: _S,  # PASSWORD_ERROR
    40113: _S,  # APP_FORBIDDEN
    40114: _S,  # ADVERTISER_LOGOUT
    40115: _S,  # AUTH_TIMESTAMP_EXPIRE
    40116: _S,  # AUTH_SIG_ERROR
    40117: _S,  # APP_METHOD_FORBIDDEN
    40118: _S,  # NOT_IN_WHITELIST: app events are allowlist-only (bububa track.go)
    40119: _S,  # NOT_SAME_IDENTITY
    40120: _S,  # TIKTOK_USER_NOT_LOGGED_IN
    40121: _S,  # NOT_A_TCM_CREATOR
    40122: _S,  # TCM_CREATOR_INVALID_COUNTRY
    40124: _S,  # DEVELOPER_REJECTED
    40125: _S,  # DEVELOPER_NO_PERMISSION
    40126: _S,  # GARM_SINGLE_AUTH_FAILED
    40127: _S,  # GARM_DOUBLE_AUTH_FAILED
    40128: _S,  # GARM_SINGLE_VALIDATE_ERROR
    40129: _S,  # GARM_DOUBLE_VALIDATE_ERROR
    40130: _S,  # SCOPE_NOT_AUTHORIZED
    40131: _S,  # SCOPE_TT_USER_OAUTH_FAILED
    40132: _TH,  # REQUEST_FREQUENCY_LIMITED
    40200: _TR,  # GENERAL_TASK_ERROR
    40201: _TR,  # TASK_NOT_READY
    40202: _TR,  # WRITE_CONFLICT
    40300: _S,  # ADVERTISER_NOT_EXIST
    40301: _S,  # ADVERTISER_ROLE_ERROR
    40302: _S,  # CUSTOMER_ADVERTISER_NOT_EXIST
    40309: _S,  # REQUIRE_LOGIN
    40400: _S,  # ROUTE_NOT_FOUND: the endpoint is wrong
    40502: _B,  # AD_NUMBER_LIMIT (ads)
    40700: _B,  # RPC_VALIDATION_ERROR: a downstream validation refused the payload
    40900: _B,  # SIGNATURE_ERROR (files)
    40901: _TR,  # VIDEO_TRANSCODING (files)
    40902: _TR,  # URL_FETCH_TIMEOUT (files)
    40903: _B,  # URL_UNAVAILABLE (files)
    40904: _B,  # IMAGE_ILLEGAL_CONTENT (files)
    40905: _B,  # FILE_NOT_EXIST (files)
    40906: _B,  # FILE_EMPTY (files)
    40907: _B,  # FILE_TOO_LARGE (files)
    40908: _B,  # FILE_TYPE_ERROR (files)
    40909: _B,  # FILE_CALCULATE_TYPE_ERROR (files)
    40910: _B,  # FILE_EXPIRED (files)
    40911: _B,  # DUPLICATED_MATERIAL_NAME (files)
    40912: _B,  # IMAGE_UNAVAILABLE (files)
    40913: _TR,  # IMAGE_FETCH_TIMEOUT (files)
    40914: _TR,  # URL_FETCH_ERROR (files)
    40915: _B,  # FILE_UPLOAD_INVALID (files)
    40916: _B,  # VIDEO_ILLEGAL_CONTENT (files)
    41000: _S,  # BLOCKED
    41001: _S,  # INTERFACE_OFFLINE: the endpoint was retired
    41002: _S,  # FIELDS_OFFLINE: a field we send was retired; every event carries it
    41013: _TR,  # SITE_TO_VIDEO_SERVICE_ERROR
    50000: _TR, 50002: _TR,  # SYS_ERROR, SYS_TIMEOUT
    # 51xxx: internal services (PIXEL_ERROR 51012 the one events go through)
    51000: _TR, 51001: _TR, 51002: _TR, 51003: _TR, 51004: _TR, 51005: _TR, 51006: _TR,
    51007: _TR, 51008: _TR, 51009: _TR, 51010: _TR, 51011: _TR, 51012: _TR, 51014: _TR,
    51015: _TR, 51016: _TR, 51017: _TR, 51018: _TR, 51019: _TR, 51020: _TR, 51030: _TR,
    51031: _TR, 51032: _TR, 51033: _TR, 51034: _TR, 51035: _TR, 51036: _TR, 51037: _TR,
    51038: _TR, 51039: _TR, 51040: _TR, 51041: _TR, 51042: _TR, 51043: _TR, 51044: _TR,
    51045: _TR, 51046: _TR, 51047: _TR, 51048: _TR, 51049: _TR, 51050: _TR, 51051: _TR,
    51052: _TR, 51053: _TR, 51054: _TR, 51055: _TR, 51056: _TR, 51057: _TR, 51058: _TR,
    51059: _TR, 51060: _TR, 51061: _TR, 51062: _TR, 51063: _TR, 51064: _TR, 51065: _TR,
    51066: _TR, 51067: _TR, 51099: _TR,
    # 52xxx: storage and cache
    52000: _TR, 52001: _TR, 52002: _TR, 52003: _TR, 52100: _TR, 52101: _TR, 52102: _TR,
    52103: _TR, 52201: _TR, 52202: _TR, 52203: _TR, 52204: _TR,
    53102: _B,  # DESERIALIZATION_ERROR: our body did not parse; the same bytes never will
    53103: _TR,  # SERIALIZATION_ERROR: the server's answer
    60001: _TR,  # MAINTENANCE
    61000: _TH,  # TOO_MANY_REQUESTS_BL
    70001: _S,  # INVALID_BIZ_AUTH_TYPE
})  # fmt: skip

# Server-side codes: the request may have been processed before it failed, so a retry may
# duplicate (the attempt's `fate_unknown`).
FIRST_SERVER_ERROR_CODE = 50000


def answer_class(code: int) -> AnswerClass | None:
    """The class of a TikTok answer code; None for a code in none of TikTok's lists."""
    return ANSWER_CLASSES.get(code)
