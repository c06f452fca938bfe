//! S3 error documents at the edge: completes the ones s3s produced (Message, Resource,
//! RequestId) and builds the ones the front answers itself, before s3s sees the request.

use http::{HeaderValue, Response, StatusCode};

pub(crate) fn error_code(body: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(body).ok()?;
    let start = s.find("<Code>")? + "<Code>".len();
    let end = s[start..].find("</Code>")? + start;
    Some(s[start..end].to_string())
}

pub(crate) fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The message S3 sends with a code, for errors raised without one.
fn default_message(code: &str) -> &'static str {
    match code {
        "NoSuchKey" => "The specified key does not exist.",
        "NoSuchBucket" => "The specified bucket does not exist.",
        "NoSuchVersion" => "The specified version does not exist.",
        "NoSuchUpload" => {
            "The specified multipart upload does not exist. The upload ID might be invalid, or the multipart upload might have been aborted or completed."
        }
        "AccessDenied" => "Access Denied",
        "SignatureDoesNotMatch" => {
            "The request signature we calculated does not match the signature you provided. Check your key and signing method."
        }
        "InvalidAccessKeyId" => "The AWS Access Key Id you provided does not exist in our records.",
        "BucketNotEmpty" => "The bucket you tried to delete is not empty",
        "BucketAlreadyExists" => {
            "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."
        }
        "BucketAlreadyOwnedByYou" => {
            "Your previous request to create the named bucket succeeded and you already own it."
        }
        "InvalidBucketName" => "The specified bucket is not valid.",
        "PreconditionFailed" => "At least one of the pre-conditions you specified did not hold",
        "InvalidRange" => "The requested range is not satisfiable",
        "BadDigest" => "The Content-MD5 you specified did not match what we received.",
        "InvalidDigest" => "The Content-MD5 you specified is not valid.",
        "EntityTooLarge" => "Your proposed upload exceeds the maximum allowed object size.",
        "EntityTooSmall" => "Your proposed upload is smaller than the minimum allowed object size.",
        "InvalidPart" => {
            "One or more of the specified parts could not be found. The part might not have been uploaded, or the specified entity tag might not have matched the part's entity tag."
        }
        "InvalidPartOrder" => {
            "The list of parts was not in ascending order. Parts must be ordered by part number."
        }
        "MalformedXML" => {
            "The XML you provided was not well-formed or did not validate against our published schema."
        }
        "NotImplemented" => "A header you provided implies functionality that is not implemented.",
        "RequestTimeTooSkewed" => {
            "The difference between the request time and the current time is too large."
        }
        "KeyTooLongError" => "Your key is too long",
        "IncompleteBody" => {
            "You did not provide the number of bytes specified by the Content-Length HTTP header."
        }
        "MissingContentLength" => "You must provide the Content-Length HTTP header.",
        "XAmzContentSHA256Mismatch" => {
            "The provided 'x-amz-content-sha256' header does not match what was computed."
        }
        "MethodNotAllowed" => "The specified method is not allowed against this resource.",
        "InternalError" => "We encountered an internal error. Please try again.",
        "SlowDown" => "Please reduce your request rate.",
        "MaxMessageLengthExceeded" => "Your request was too big.",
        "RequestTimeout" => {
            "Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed."
        }
        _ => "The request could not be completed.",
    }
}

/// Adds Message, RequestId and Resource to an S3 error document that lacks them.
pub(crate) fn complete_error_body(
    body: &[u8],
    request_id: &str,
    resource: &str,
) -> Option<Vec<u8>> {
    let s = std::str::from_utf8(body).ok()?;
    let end = s.rfind("</Error>")?;
    let mut extra = String::new();
    if !s.contains("<Message>") {
        let code = error_code(body).unwrap_or_default();
        extra.push_str(&format!(
            "<Message>{}</Message>",
            xml_escape(default_message(&code))
        ));
    }
    if !s.contains("<Resource>") {
        extra.push_str(&format!("<Resource>{}</Resource>", xml_escape(resource)));
    }
    if !s.contains("<RequestId>") {
        extra.push_str(&format!("<RequestId>{request_id}</RequestId>"));
    }
    Some(format!("{}{}{}", &s[..end], extra, &s[end..]).into_bytes())
}

/// An S3 error response built by the front. `extra` elements (name, text) go after Message, e.g.
/// `HeadersNotSigned`; names are ours (static), texts are escaped.
pub(crate) fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    extra: &[(&str, &str)],
    request_id: &str,
    resource: &str,
) -> Response<s3s::Body> {
    let mut more = String::new();
    for (name, text) in extra {
        more.push_str(&format!("<{name}>{}</{name}>", xml_escape(text)));
    }
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message>{more}<Resource>{}</Resource><RequestId>{request_id}</RequestId></Error>",
        xml_escape(message),
        xml_escape(resource)
    );
    let mut resp = Response::new(s3s::Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

/// The S3 error for `code` with S3's own message for it.
pub(crate) fn s3_error_response(
    status: StatusCode,
    code: &str,
    request_id: &str,
    resource: &str,
) -> Response<s3s::Body> {
    error_response(
        status,
        code,
        default_message(code),
        &[],
        request_id,
        resource,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_gets_request_id_and_resource() {
        let body =
            b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>m</Message></Error>";
        let out = String::from_utf8(complete_error_body(body, "ABC", "/b/k&").unwrap()).unwrap();
        assert!(
            out.contains("<Resource>/b/k&amp;</Resource><RequestId>ABC</RequestId></Error>"),
            "{out}"
        );
        assert_eq!(error_code(body).as_deref(), Some("NoSuchKey"));
    }

    #[test]
    fn extra_elements_are_escaped() {
        let r = error_response(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "m",
            &[("HeadersNotSigned", "x-amz-a, <b>")],
            "ID",
            "/",
        );
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let body = r.into_body().bytes().unwrap();
        let body = std::str::from_utf8(&body).unwrap();
        assert!(
            body.contains("<Message>m</Message><HeadersNotSigned>x-amz-a, &lt;b&gt;</HeadersNotSigned><Resource>/</Resource>"),
            "{body}"
        );
    }
}
