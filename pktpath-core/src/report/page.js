"use strict";
// pktpath's report: draws what the data (computed by pktpath) says. Every
// string from the data is inserted as text (textContent, attributes),
// never parsed as markup.
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const LIST_MAX = 500;
  let D = null;
  let S = [];
  let shown = [];
  let chosen = null;

  function str(i) { return i >= 0 ? S[i] : null; }
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== null && v !== undefined) e.setAttribute(k, v);
    }
    for (const k of kids) {
      if (k === null || k === undefined) continue;
      e.append(typeof k === "string" || typeof k === "number" ? String(k) : k);
    }
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function label(ns) {
    const n = D.topology.nodes.find((n) => n.id === ns);
    return n ? n.label : ns;
  }

  async function load() {
    const text = document.getElementById("data").textContent.trim();
    const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }

  // Find: words that must all hold; key:value words look at one field.
  function matcher(query) {
    const words = query.trim().toLowerCase().split(/\s+/).filter((w) => w);
    return (j) => {
      const packet = (str(j.packet) || "").toLowerCase();
      for (const w of words) {
        const [k, v] = w.includes(":") ? [w.slice(0, w.indexOf(":")), w.slice(w.indexOf(":") + 1)] : ["", w];
        const steps = j.steps;
        const ok = {
          end: () => j.kind === v || (str(j.end) || "").toLowerCase().includes(v),
          ns: () => steps.some((s) => S[s[1]].toLowerCase() === v || label(S[s[1]]).toLowerCase() === v),
          rule: () => steps.some((s) => S[s[4]] === "nft_trace" && S[s[5]].toLowerCase().includes(v)),
          proto: () => packet.includes(" " + v),
          port: () => new RegExp("(^|[ .:>])" + v.replace(/\D/g, "") + "([ ,:]|$)").test(packet),
          addr: () => packet.includes(v),
          path: () => String(j.path + 1) === v,
          id: () => String(j.id) === v,
          site: () => steps.some((s) => S[s[4]].toLowerCase() === v),
        }[k];
        const hit = ok ? ok() : packet.includes(w) || (str(j.end) || "").toLowerCase().includes(w) ||
          steps.some((s) => S[s[5]].toLowerCase().includes(w) || S[s[1]].toLowerCase().includes(w));
        if (!hit) return false;
      }
      return true;
    };
  }

  function list() {
    const q = document.getElementById("find").value;
    const m = matcher(q);
    shown = D.journeys.filter(m);
    const ol = document.getElementById("journeys");
    ol.replaceChildren();
    for (const j of shown.slice(0, LIST_MAX)) {
      const li = el("li", { "data-id": j.id, class: j === chosen ? "chosen" : null },
        el("b", {}, "#" + j.id + " "), str(j.packet) || "(headers not captured)", " ",
        el("span", { class: j.kind }, j.kind));
      li.addEventListener("click", () => choose(j));
      ol.append(li);
    }
    document.getElementById("found").textContent = q.trim() ? shown.length + " of " + D.journeys.length + " journeys" : "";
    document.getElementById("more").textContent = shown.length > LIST_MAX
      ? (shown.length - LIST_MAX) + " more: narrow the search" : "";
  }

  // Nodes in columns: each one column after the node it is first reached
  // from (along the links, from the first node of the most taken path).
  function layout() {
    const nodes = D.topology.nodes;
    const adj = new Map(nodes.map((n) => [n.id, []]));
    for (const l of D.topology.links) {
      if (adj.has(l.a) && adj.has(l.b)) { adj.get(l.a).push(l.b); adj.get(l.b).push(l.a); }
    }
    const col = new Map();
    const first = D.paths.length ? D.paths[0].places.map((p) => p[0]) : [];
    const roots = first.concat(nodes.map((n) => n.id));
    for (const r of roots) {
      if (col.has(r) || !adj.has(r)) continue;
      col.set(r, 0);
      const queue = [r];
      while (queue.length) {
        const n = queue.shift();
        for (const m of adj.get(n)) if (!col.has(m)) { col.set(m, col.get(n) + 1); queue.push(m); }
      }
    }
    const rows = new Map();
    const pos = new Map();
    const W = 210, H = 40;
    // An IMUNES lab's coordinates, scaled to about 1000 px wide; the nodes
    // it lacks go in a row below.
    const placed = nodes.filter((n) => n.x != null && n.y != null);
    if (placed.length) {
      const x0 = Math.min(...placed.map((n) => n.x)), y0 = Math.min(...placed.map((n) => n.y));
      const span = Math.max(...placed.map((n) => n.x)) - x0;
      const k = span > 0 ? 1000 / span : 1;
      let bottom = 0, left = 20;
      for (const n of placed) {
        const h = H + 13 * Math.min(n.devices.length, 6);
        const p = { x: 20 + (n.x - x0) * k, y: 40 + (n.y - y0) * k, w: W, h: h };
        pos.set(n.id, p);
        bottom = Math.max(bottom, p.y + h);
      }
      for (const n of nodes) {
        if (pos.has(n.id)) continue;
        pos.set(n.id, { x: left, y: bottom + 60, w: W, h: H + 13 * Math.min(n.devices.length, 6) });
        left += W + 70;
      }
      return pos;
    }
    for (const n of nodes) {
      const c = col.get(n.id) || 0;
      const r = rows.get(c) || 0;
      rows.set(c, r + 1);
      const h = H + 13 * Math.min(n.devices.length, 7);
      pos.set(n.id, { x: 20 + c * (W + 70), y: 40 + r * 150, w: W, h: h });
    }
    return pos;
  }

  function drawNetwork(j) {
    const s = document.getElementById("network");
    s.replaceChildren();
    const pos = layout();
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "6", markerHeight: "6", orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z" }));
    defs.append(marker);
    s.append(defs);
    let maxX = 200, maxY = 100;
    const center = (id) => { const p = pos.get(id); return p ? [p.x + p.w / 2, p.y + p.h / 2] : null; };
    for (const l of D.topology.links) {
      const a = center(l.a), b = center(l.b);
      if (!a || !b) continue;
      const line = svg("line", { class: l.count ? "link" : "link idle", x1: a[0], y1: a[1], x2: b[0], y2: b[1] });
      line.append(svg("title", {}, l.a + (l.a_dev ? " " + l.a_dev : "") + " — " + l.b + (l.b_dev ? " " + l.b_dev : "") +
        ": " + (l.count ? l.count + " crossings" : "no packet crossed it")));
      s.append(line);
      if (l.via) s.append(svg("text", { x: (a[0] + b[0]) / 2, y: (a[1] + b[1]) / 2 - 4, "text-anchor": "middle" }, l.via));
    }
    const onPath = new Set(j ? j.steps.map((st) => S[st[1]]) : []);
    const died = j && j.kind === "dropped" ? str(j.end_netns) : null;
    for (const n of D.topology.nodes) {
      const p = pos.get(n.id);
      const g = svg("g", { class: "node" + (onPath.has(n.id) ? " on" : "") + (died === n.id ? " died" : ""), "data-netns": n.id });
      g.append(svg("rect", { x: p.x, y: p.y, width: p.w, height: p.h }));
      g.append(svg("text", { x: p.x + 8, y: p.y + 16, "font-weight": "bold" }, n.label));
      if (n.label !== n.id) g.append(svg("text", { x: p.x + 8, y: p.y + 29, class: "dev" }, n.id));
      n.devices.slice(0, 6).forEach((d, i) => {
        const b = n.bridges.includes(d) ? " (bridge)" : "";
        const addrs = (n.addrs || []).filter((a) => a.startsWith(d + " ")).map((a) => a.slice(d.length + 1));
        g.append(svg("text", { x: p.x + 14, y: p.y + 44 + 13 * i, class: "dev" }, d + b + (addrs.length ? " " + addrs.join(" ") : "")));
      });
      if (n.devices.length > 6) {
        g.append(svg("text", { x: p.x + 14, y: p.y + 44 + 13 * 6, class: "dev" }, "+" + (n.devices.length - 6) + " more"));
      }
      if ((n.routes || []).length) g.append(svg("title", {}, n.routes.join("\n")));
      s.append(g);
      maxX = Math.max(maxX, p.x + p.w + 20);
      maxY = Math.max(maxY, p.y + p.h + 30);
    }
    if (j) {
      // Each hop from box edge to box edge, above the boxes' device lines
      // (below them when the nodes are in one column).
      j.hops.forEach((h, i) => {
        const pa = pos.get(S[h[0]]), pb = pos.get(S[h[2]]);
        if (!pa || !pb) return;
        const off = 4 * (i % 4);
        let a, b;
        if (pa.x !== pb.x) {
          const right = pb.x > pa.x;
          a = [right ? pa.x + pa.w : pa.x, pa.y - 8 - off];
          b = [right ? pb.x : pb.x + pb.w, pb.y - 8 - off];
        } else {
          const down = pb.y > pa.y;
          a = [pa.x + pa.w - 20 - off, down ? pa.y + pa.h : pa.y];
          b = [pb.x + pb.w - 20 - off, down ? pb.y : pb.y + pb.h];
        }
        const path = svg("path", { class: "hop", d: `M ${a[0]} ${a[1]} L ${b[0]} ${b[1]}`, "marker-end": "url(#arrow)", "data-hop": i + 1 });
        s.append(path);
        s.append(svg("text", { class: "hop-n", x: (a[0] + b[0]) / 2 - 3, y: (a[1] + b[1]) / 2 - 6 }, String(i + 1)));
      });
      if (died) {
        const c = center(died);
        if (c) s.append(svg("text", { class: "endmark", x: c[0] + 60, y: c[1] - 8 }, "✗"));
      }
    }
    s.setAttribute("viewBox", `0 0 ${maxX} ${maxY}`);
    s.setAttribute("height", String(Math.min(maxY, 600)));
  }

  function choose(j) {
    chosen = j;
    for (const li of document.querySelectorAll("#journeys li")) {
      li.classList.toggle("chosen", li.getAttribute("data-id") === String(j.id));
    }
    drawNetwork(j);
    document.getElementById("jid").textContent = "#" + j.id;
    const box = document.getElementById("journey");
    box.replaceChildren();
    box.append(el("p", {}, el("b", {}, str(j.packet) || "(headers not captured)"), ", " + j.len + " bytes"));
    box.append(el("p", { class: "end " + j.kind, id: "end" }, str(j.end)));
    if (j.hint >= 0) box.append(el("p", { class: "hint" }, "hint: " + str(j.hint)));
    for (const c of j.caveats) box.append(el("p", { class: "note" }, "note: " + S[c]));
    if (j.hops.length) {
      const ol = el("ol", { class: "hops", id: "hops" });
      for (const h of j.hops) {
        ol.append(el("li", {}, label(S[h[0]]) + (h[1] >= 0 ? " (" + S[h[1]] + ")" : "") + " → " +
          label(S[h[2]]) + (h[3] >= 0 ? " (" + S[h[3]] + ")" : "")));
      }
      box.append(ol);
    }
    // Timeline: a row per step, a lane per subsystem of the source tree.
    const lanes = [];
    for (const st of j.steps) if (!lanes.includes(S[st[8]])) lanes.push(S[st[8]]);
    const head = el("tr", {}, el("th", {}, "#"), el("th", {}, "+µs"), el("th", {}, "netns"), el("th", {}, "dev"));
    for (const l of lanes) head.append(el("th", { class: "lane" }, l));
    head.append(el("th", {}, "site"), el("th", {}, "what"), el("th", {}, "source"));
    const body = el("tbody");
    j.steps.forEach((st, i) => {
      const cls = [st[9] & 1 ? "correlated" : "", st[9] & 4 ? "evidence" : "", S[st[3]] === "drop" ? "drop" : ""].join(" ").trim();
      const tr = el("tr", { class: cls || null }, el("td", { class: "num" }, String(i + 1)),
        el("td", { class: "num" }, st[0].toFixed(1)), el("td", {}, label(S[st[1]])), el("td", {}, str(st[2]) || ""));
      for (const l of lanes) tr.append(el("td", { class: "lane" }, l === S[st[8]] ? "●" : ""));
      const place = str(st[6]);
      const url = str(st[7]);
      const src = url && /^https:\/\/elixir\.bootlin\.com\//.test(url)
        ? el("a", { href: url, rel: "noreferrer noopener", target: "_blank" }, place || "source")
        : place || "";
      tr.append(el("td", {}, S[st[4]]), el("td", {}, S[st[5]]), el("td", {}, src));
      body.append(tr);
    });
    box.append(el("table", { id: "timeline" }, el("thead", {}, head), body));
    if (location.hash !== "#j=" + j.id) history.replaceState(null, "", "#j=" + j.id);
  }

  function paths() {
    const tb = document.querySelector("#paths tbody");
    tb.replaceChildren();
    D.paths.forEach((p, i) => {
      const text = p.places.map((pl) => label(pl[0]) + ": " + pl[1].join(", ")).join(" → ");
      const ends = p.ends.map((e) => e[1] + " " + e[0]).join("; ");
      const dies = p.ends.some((e) => e[0].startsWith("dropped"));
      const tr = el("tr", { class: "clickable", "data-path": i + 1 }, el("td", { class: "num" }, String(p.count)),
        el("td", {}, text), el("td", { class: dies ? "dropped" : null }, ends));
      tr.addEventListener("click", () => { document.getElementById("find").value = "path:" + (i + 1); list(); if (shown.length) choose(shown[0]); });
      tb.append(tr);
    });
  }

  function flows() {
    const kind = document.getElementById("flow-kind").value;
    const edges = D[kind];
    const max = Math.max(1, ...edges.map((e) => e.count));
    const tb = document.querySelector("#flows tbody");
    tb.replaceChildren();
    for (const e of edges) {
      const bar = el("span", { class: "bar" + (e.to === "(dropped)" ? " dies" : "") });
      bar.style.width = Math.max(2, Math.round(200 * e.count / max)) + "px";
      tb.append(el("tr", {}, el("td", {}, e.from), el("td", { class: e.to === "(dropped)" ? "dropped" : null }, e.to),
        el("td", { class: "num" }, String(e.count)), el("td", {}, bar)));
    }
  }

  load().then((data) => {
    D = data;
    S = D.strings;
    const drops = D.journeys.filter((j) => j.kind === "dropped").length;
    document.getElementById("summary").textContent = D.journeys.length + " journeys (" + drops + " dropped), " +
      D.paths.length + " distinct paths, " + D.topology.nodes.length + " namespaces; " + D.source;
    document.getElementById("net-note").textContent = D.topology.links.length ? "" : "(no packet moved between namespaces)";
    document.getElementById("find").addEventListener("input", list);
    document.getElementById("flow-kind").addEventListener("change", flows);
    paths();
    flows();
    list();
    const want = /^#j=(\d+)$/.exec(location.hash);
    const j = want ? D.journeys.find((j) => String(j.id) === want[1]) : (D.journeys.find((j) => j.kind === "dropped") || D.journeys[0]);
    if (j) choose(j); else drawNetwork(null);
    document.body.setAttribute("data-ready", "1");
    document.body.setAttribute("data-ready-ms", String(Math.round(performance.now())));
  }).catch((e) => {
    document.getElementById("summary").textContent = "This report's data could not be read: " + e;
    document.body.setAttribute("data-ready", "error");
  });
})();
