//! `GET /`: the live dashboard, and `GET /assets/{name}`: its script,
//! styles and the vendored chart library. Everything is compiled into the
//! binary; the page fetches the JSON routes and renders every value as
//! text (see `assets/README.md` for where uPlot comes from).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest, HttpResponse};

use super::errors::ApiError;

/// Defence in depth for the page: scripts only from this origin (no inline
/// script, so an injected `onerror=` attribute could not run), data only
/// from this origin.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// Versioned name: the content never changes under it.
    immutable: bool,
}

static INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("assets/index.html"),
    immutable: false,
};

static ASSETS: [Asset; 4] = [
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/app.js"),
        immutable: false,
    },
    Asset {
        name: "style.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/style.css"),
        immutable: false,
    },
    Asset {
        name: "uPlot-1.6.32.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("assets/uPlot.iife.min.js"),
        immutable: true,
    },
    Asset {
        name: "uPlot-1.6.32.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("assets/uPlot.min.css"),
        immutable: true,
    },
];

/// Entity tags of the index and every asset, computed once per process.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    std::iter::once(&INDEX)
        .chain(ASSETS.iter())
        .map(|a| {
            let mut h = DefaultHasher::new();
            a.body.hash(&mut h);
            format!("\"{:016x}\"", h.finish())
        })
        .collect()
});

/// Answers `asset`, or 304 when the client already holds this version.
fn serve(req: &HttpRequest, asset: &Asset, etag: &str) -> HttpResponse {
    let cache = if asset.immutable {
        "public, max-age=31536000, immutable"
    } else {
        // Revalidate every load: a new binary must show its new page.
        "no-cache"
    };
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    resp.insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::ETAG, etag))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if asset.name == INDEX.name {
        resp.insert_header((
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ));
    }
    if fresh {
        resp.finish()
    } else {
        resp.content_type(asset.content_type).body(asset.body)
    }
}

/// `GET /`: the dashboard page.
pub async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, &INDEX, &ETAGS[0])
}

/// `GET /assets/{name}`.
pub async fn asset(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    ASSETS
        .iter()
        .zip(ETAGS.iter().skip(1))
        .find(|(a, _)| a.name == name)
        .map(|(a, etag)| serve(&req, a, etag))
        .ok_or_else(|| ApiError::NotFound(format!("no asset {name:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Version of the vendored uPlot; part of its asset names, so those can
    /// be cached for good.
    const UPLOT_VERSION: &str = "1.6.32";

    #[test]
    fn the_page_names_every_asset_it_loads_and_the_versioned_names_match() {
        let page = std::str::from_utf8(INDEX.body).expect("index.html is UTF-8");
        for asset in &ASSETS {
            assert!(
                page.contains(&format!("/assets/{}", asset.name)),
                "index.html does not load {}",
                asset.name
            );
            if asset.immutable {
                assert!(asset.name.contains(UPLOT_VERSION), "{}", asset.name);
            }
        }
        let lib = std::str::from_utf8(ASSETS[2].body).expect("uPlot is UTF-8");
        assert!(lib.starts_with(&format!(
            "/*! https://github.com/leeoniya/uPlot (v{UPLOT_VERSION}) */"
        )));
    }

    #[test]
    fn the_page_never_parses_data_as_html() {
        let app = std::str::from_utf8(ASSETS[0].body).expect("app.js is UTF-8");
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!app.contains(sink), "app.js uses {sink}");
        }
    }
}
