from __future__ import annotations

SCHEMA_REF = "#/components/schemas/"


def response_schema(document: dict, path: str) -> dict:
    ref = document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]["$ref"]
    return document["components"]["schemas"][ref.removeprefix(SCHEMA_REF)]


async def test_merged_document_has_every_live_upstreams_paths_under_the_gateways_info(
    client,
) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "Runyard API"
    for service in ("auth", "experiments", "notifications"):
        assert f"/api/v1/{service}/echo-model/{{item_id}}" in document["paths"]
    assert not any(path.startswith("/internal/") for path in document["paths"])
    assert "/api/v1/{path}" not in document["paths"]
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert document["security"] == [{"bearerAuth": []}, {"apiKeyAuth": []}]
    assert document["paths"]["/api/v1/auth/register"]["post"]["security"] == []


async def test_schemas_with_the_same_name_from_two_services_both_survive(client) -> None:
    document = (await client.get("/openapi.json")).json()
    fields = {
        service: set(
            response_schema(document, f"/api/v1/{service}/echo-model/{{item_id}}")["properties"]
        )
        for service in ("auth", "experiments", "notifications")
    }
    assert fields == {
        "auth": {"auth_field"},
        "experiments": {"experiments_field"},
        "notifications": {"notifications_field"},
    }


async def test_docs_serve_swagger_ui_for_the_merged_document(client) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert "swagger-ui" in response.text
    assert "'/openapi.json'" in response.text or '"/openapi.json"' in response.text


async def test_fastapis_own_redoc_is_gone(client) -> None:
    # /redoc is a console path now; the gateway itself serves no ReDoc page
    response = await client.get("/redoc")
    assert response.status_code != 200
    assert "redoc.standalone" not in response.text


async def test_merged_document_is_a_valid_openapi_31_document(client) -> None:
    from openapi_spec_validator import validate

    document = (await client.get("/openapi.json")).json()
    validate(document)  # raises on any schema violation or unresolvable $ref


async def test_merged_document_has_the_gateways_admin_endpoints_and_both_security_schemes(
    client,
) -> None:
    document = (await client.get("/openapi.json")).json()
    for path in ("request-logs", "metrics", "audit-log"):
        assert "get" in document["paths"][f"/api/v1/admin/{path}"]
    schemes = document["components"]["securitySchemes"]
    assert schemes["apiKeyAuth"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    metrics = document["paths"]["/api/v1/admin/metrics"]["get"]
    assert {p["name"] for p in metrics["parameters"]} >= {"aggregation", "cursor", "limit"}


async def test_swagger_ui_loads_its_assets_from_the_gateway_not_a_cdn(client) -> None:
    page = (await client.get("/docs")).text
    assert "cdn" not in page.lower()
    assets = ["/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"]
    for asset in assets:
        assert asset in page
        response = await client.get(asset)
        assert response.status_code == 200
        assert len(response.content) > 1000


async def test_a_service_that_stops_answering_keeps_its_last_document_in_the_merge() -> None:
    from runyard.gateway.openapi import OpenApiAggregator

    answering = {"experiments": True}

    async def fetch(name: str, url: str) -> dict[str, object]:
        if not answering[name]:
            raise TimeoutError(f"{name} is busy")
        return {
            "openapi": "3.1.0",
            "info": {"title": name, "version": "1"},
            "paths": {
                "/api/v1/experiments": {"get": {"responses": {"200": {"description": "ok"}}}}
            },
        }

    aggregator = OpenApiAggregator({"experiments": "http://x"}, fetch, ttl_s=0.0)
    assert "/api/v1/experiments" in (await aggregator.document())["paths"]
    answering["experiments"] = False
    assert "/api/v1/experiments" in (await aggregator.document())["paths"]
