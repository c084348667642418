//! A tiny well-formedness check of the XML, SVG and HTML reports (no XML parser in the dependency
//! tree of the tests), and the texts of an SVG.

/// Checks that tags balance, attributes are quoted and `&` starts an entity. `void` lists HTML
/// elements that have no end tag.
pub fn well_formed(doc: &str, void: &[&str]) -> Result<usize, String> {
    let b = doc.as_bytes();
    let mut stack: Vec<String> = Vec::new();
    let mut i = 0;
    let mut elements = 0;
    let entity_ok = |rest: &str| {
        ["amp;", "lt;", "gt;", "quot;", "#39;"]
            .iter()
            .any(|e| rest.starts_with(e))
    };
    while i < b.len() {
        match b[i] {
            b'<' => {
                if doc[i..].starts_with("<!--") {
                    i += doc[i..].find("-->").ok_or("unclosed comment")? + 3;
                    continue;
                }
                if doc[i..].starts_with("<!") || doc[i..].starts_with("<?") {
                    i += doc[i..].find('>').ok_or("unclosed declaration")? + 1;
                    continue;
                }
                // Scan the tag, honouring quotes.
                let start = i;
                let mut j = i + 1;
                let mut quote = None;
                while j < b.len() {
                    match (quote, b[j]) {
                        (None, b'"') | (None, b'\'') => quote = Some(b[j]),
                        (Some(q), c) if c == q => quote = None,
                        (Some(_), b'<') => return Err(format!("`<` inside an attribute at {j}")),
                        (Some(_), b'&') if !entity_ok(&doc[j + 1..]) => {
                            return Err(format!("bare `&` at {j}"));
                        }
                        (None, b'>') => break,
                        _ => {}
                    }
                    j += 1;
                }
                let tag = &doc[start + 1..j];
                i = j + 1;
                if let Some(name) = tag.strip_prefix('/') {
                    let name = name.trim();
                    match stack.pop() {
                        Some(open) if open == name => {}
                        other => return Err(format!("`</{name}>` closes {other:?} at {start}")),
                    }
                    continue;
                }
                elements += 1;
                let self_closing = tag.ends_with('/');
                let tag = tag.trim_end_matches('/');
                let name: String = tag.chars().take_while(|c| !c.is_whitespace()).collect();
                if name.is_empty() {
                    return Err(format!("empty tag at {start}"));
                }
                // Attributes: name="value" pairs only.
                let attrs = tag[name.len()..].trim();
                let mut rest = attrs;
                while !rest.is_empty() {
                    let eq = rest
                        .find('=')
                        .ok_or_else(|| format!("attribute without value in <{name}> at {start}"))?;
                    let after = &rest[eq + 1..];
                    let q = after.chars().next().ok_or("attribute cut short")?;
                    if q != '"' && q != '\'' {
                        return Err(format!("unquoted attribute in <{name}> at {start}"));
                    }
                    let close = after[1..].find(q).ok_or("unclosed attribute")?;
                    rest = after[close + 2..].trim_start();
                }
                if !self_closing && !void.contains(&name.as_str()) {
                    stack.push(name);
                }
                // Raw text elements.
                if let Some(open) = stack.last().filter(|n| *n == "style" || *n == "script") {
                    let end = format!("</{open}>");
                    i += doc[i..].find(&end).ok_or("unclosed raw text element")?;
                }
            }
            b'&' => {
                if !entity_ok(&doc[i + 1..]) {
                    return Err(format!("bare `&` at {i}: {:?}", &doc[i..(i + 20).min(doc.len())]));
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    if stack.is_empty() {
        Ok(elements)
    } else {
        Err(format!("unclosed elements: {stack:?}"))
    }
}

pub const HTML_VOID: &[&str] = &["meta", "br", "hr", "img", "input", "link"];

/// The text of every `<text …>…</text>` element whose content has no child element.
pub fn svg_texts(svg: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(p) = rest.find("<text") {
        rest = &rest[p..];
        let Some(gt) = rest.find('>') else { break };
        let Some(end) = rest.find("</text>") else { break };
        let inner = &rest[gt + 1..end];
        let inner = match inner.rfind('>') {
            Some(q) => &inner[q + 1..],
            None => inner,
        };
        out.push(inner.to_owned());
        rest = &rest[end..];
    }
    out
}
