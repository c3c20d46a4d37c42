"""The JSON bodies of the HTTP API (pydantic): what /docs shows and what every request is checked against."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_FAN_OUT = 32  # adapters one request may name: each is a forward pass over every text


class PredictRequest(BaseModel):
    """`texts` (several) or `text` (one), for the model named `adapter`, or for each of `adapters`
    (fan-out: every text scored by every named model; `"*"`: every loaded model)."""

    model_config = ConfigDict(extra="forbid")
    texts: list[str] | None = Field(None, description="texts to classify, answered in order")
    text: str | None = Field(None, description="one text (instead of texts)")
    adapter: str | None = Field(None, description="a loaded model's name (GET /v1/adapters)")
    adapters: list[str] | Literal["*"] | None = Field(
        None, description='fan-out, instead of adapter: several models\' names, or "*" for every loaded one'
    )
    top_k: int = Field(3, ge=1, le=100, description="how many labels with their probabilities to return per text")

    @model_validator(mode="after")
    def one_of_text_or_texts(self) -> PredictRequest:
        if (self.texts is None) == (self.text is None):
            raise ValueError("give exactly one of `texts` (a list) or `text` (a string)")
        if self.texts is not None and not self.texts:
            raise ValueError("`texts` is empty: give at least one text")
        if (self.adapter is None) == (self.adapters is None):
            raise ValueError('give exactly one of `adapter` (a name) or `adapters` (a list of names, or "*")')
        if isinstance(self.adapters, list):
            if not self.adapters or len(set(self.adapters)) != len(self.adapters):
                raise ValueError("`adapters` must name at least one model, each once")
            if len(self.adapters) > MAX_FAN_OUT:
                raise ValueError(f"`adapters` names {len(self.adapters)} models; at most {MAX_FAN_OUT} per request")
        return self

    @property
    def all_texts(self) -> list[str]:
        return self.texts if self.texts is not None else [self.text]


class LabelScore(BaseModel):
    label: str
    probability: float


class Prediction(BaseModel):
    label: str
    score: float = Field(..., description="the probability of `label`")
    top_k: list[LabelScore]


class PredictResponse(BaseModel):
    adapter: str
    fingerprint: str = Field(..., description="sha256 of the base the model runs on (or of its merged dir)")
    predictions: list[Prediction]
    latency_ms: float = Field(..., description="server time from the request's arrival to its answer")


class FanOutResponse(BaseModel):
    """One block per adapter, in the order asked (`"*"`: by name)."""

    results: list[PredictResponse]
    latency_ms: float = Field(..., description="server time from the request's arrival to its answer")


class SimilarRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    adapter: str
    k: int = Field(5, ge=1, le=100)


class SimilarExample(BaseModel):
    text: str
    label: str
    similarity: float = Field(..., description="cosine similarity of the pooled embeddings")


class SimilarResponse(BaseModel):
    adapter: str
    examples: list[SimilarExample]


class Telemetry(BaseModel):
    """What the model has answered since it loaded (serve/quality.py)."""

    texts: int = Field(..., description="texts answered")
    window: int = Field(..., description="of them, the last ones the shares and the drift are over (at most 1,000)")
    label_shares: dict[str, float] = Field(..., description="top-label shares over the window")
    mean_top1: float | None = Field(..., description="mean probability of the top label")
    long_share: float | None = Field(..., description="share of texts longer than the model reads whole")
    drift: float | None = Field(
        ...,
        description="total variation distance from the training split's label shares (None: under 100 texts, "
        "or no reference)",
    )
    has_reference: bool = Field(..., description="the job kept its training split's label counts")


class AdapterInfo(BaseModel):
    name: str
    labels: list[str]
    base: str = Field(..., description="the backbone the model was trained on")
    fingerprint: str
    regime: str
    rank: int | None
    test_acc: float | None
    test_f1_macro: float | None
    trained_at: str | None
    source: str = Field(..., description="job or export (where it lies on the server is not shown)")
    shares_base: bool = Field(..., description="an adapter on a shared base (else a merged model alone)")
    similar_index_rows: int
    precision: str = Field(..., description="what its forward passes compute in: fp32, bf16 (autocast) or int8")
    telemetry: Telemetry
    stack_weight: float | None = Field(
        None, description="a stacked model: the trained model's weight in its mix with TF-IDF (else null)"
    )


class PutAdapter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(..., description="a job dir, an export dir, or a sweep dir (its best job)")


class ErrorBody(BaseModel):
    code: int
    message: str
    request_id: str = Field(..., description="the server log's details of this request are under this id")


class ErrorResponse(BaseModel):
    error: ErrorBody
