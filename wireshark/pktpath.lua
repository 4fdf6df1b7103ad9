-- pktpath.lua: Wireshark/tshark dissector for pktpath captures.
--
--   * pcapng written by `pktpath -w FILE`: a postdissector turns the packet
--     comments ("pktpath journey #ID: END", then one tab-separated line per
--     step) into a "pktpath" tree with filterable fields.
--   * `pktpath -w FILE --format mbuf-trace`, and captures of FreeBSD's
--     mbuf_trace tap: link type DLT_USER0, each record a little-endian u16
--     count, count x (u16 little-endian length counting the NUL, string,
--     NUL), then the Ethernet frame. The strings become the same pktpath.*
--     fields (free-form strings from FreeBSD are shown as given, as the
--     site) and the frame is handed to the Ethernet dissector.
--
-- A step line has 8 tab-separated fields, "-" when empty:
--   index  +offset ms  netns  device  subsystem  site  source  detail
--
-- Install: wireshark/install.sh (copies this file into the personal Lua
-- plugin folder), or try it once: tshark -X lua_script:wireshark/pktpath.lua
--
-- Written for Wireshark 4.0 (Lua 5.2); never raises a Lua error on bad
-- input: malformed records get an expert info (mbuf_trace.malformed).

local HEADER_PREFIX = "pktpath journey #"

---------------------------------------------------------------------------
-- Protocols and fields

local pktpath = Proto("pktpath", "pktpath: packet path through the Linux network stack")
local mbuf = Proto("mbuf_trace", "mbuf_trace record (DLT_USER0)")

local pf = {
    journey     = ProtoField.uint64("pktpath.journey", "Journey", base.DEC),
    ["end"]     = ProtoField.string("pktpath.end", "End"),
    drop_reason = ProtoField.string("pktpath.drop_reason", "Drop reason"),
    steps       = ProtoField.uint32("pktpath.steps", "Steps", base.DEC),
    step        = ProtoField.none("pktpath.step", "Step"),
    index       = ProtoField.uint32("pktpath.step.index", "Index", base.DEC),
    offset_ms   = ProtoField.double("pktpath.offset_ms", "Time since the first step (ms)"),
    netns       = ProtoField.string("pktpath.netns", "Network namespace"),
    dev         = ProtoField.string("pktpath.dev", "Device"),
    subsystem   = ProtoField.string("pktpath.subsystem", "Subsystem"),
    site        = ProtoField.string("pktpath.site", "Site"),
    source      = ProtoField.string("pktpath.source", "Source"),
    detail      = ProtoField.string("pktpath.detail", "Detail"),
    verdict     = ProtoField.string("pktpath.verdict", "Verdict"),
}
pktpath.fields = pf

local mf = {
    count  = ProtoField.uint16("mbuf_trace.count", "String count", base.DEC),
    len    = ProtoField.uint16("mbuf_trace.len", "String length (with NUL)", base.DEC),
    string = ProtoField.string("mbuf_trace.string", "String"),
}
mbuf.fields = mf

local ef_malformed = ProtoExpert.new("mbuf_trace.malformed", "Malformed mbuf_trace record",
    expert.group.MALFORMED, expert.severity.ERROR)
local ef_comment = ProtoExpert.new("pktpath.bad_line", "pktpath comment line not understood",
    expert.group.MALFORMED, expert.severity.WARN)
mbuf.experts = { ef_malformed }
pktpath.experts = { ef_comment }

local f_comment = Field.new("frame.comment")
local eth = Dissector.get("eth_withoutfcs")

---------------------------------------------------------------------------
-- Parsing (pure Lua on strings: cannot throw on any input)

local function split_tabs(s)
    local t = {}
    for f in (s .. "\t"):gmatch("([^\t]*)\t") do
        t[#t + 1] = f
    end
    return t
end

local function dash(v)
    if v == nil or v == "-" or v == "" then return nil end
    return v
end

-- A pktpath step line as a table, or nil when it is not one.
local function parse_step(s)
    local f = split_tabs(s)
    if #f ~= 8 then return nil end
    if not f[1]:match("^%d+$") then return nil end
    local off = f[2]:match("^%+(%d+%.?%d*)ms$")
    if not off then return nil end
    return {
        index = tonumber(f[1]),
        offset_ms = tonumber(off),
        netns = dash(f[3]),
        dev = dash(f[4]),
        subsystem = dash(f[5]),
        site = dash(f[6]),
        source = dash(f[7]),
        detail = dash(f[8]),
    }
end

-- "drop: REASON at ..." -> REASON
local function step_drop_reason(st)
    return st.detail and st.detail:match("^drop: ([%w_]+)")
end

-- "dropped in netns X: REASON at ..., why" -> REASON
local function end_drop_reason(text)
    return text:match("^dropped in netns .-: ([%w_]+)") or text:match("^dropped[^:]*:%s*([%w_]+)")
end

local VERDICT_SUBSYSTEMS = { netfilter = true, nftables = true, nft = true, drop = true }

local function is_verdict(st)
    return (st.subsystem and VERDICT_SUBSYSTEMS[st.subsystem]) or step_drop_reason(st) ~= nil
end

-- A decimal string as UInt64 (journey ids are u64: exact past 2^53).
local function u64(dec)
    local v = UInt64.new(0)
    for d in dec:gmatch("%d") do
        v = v * 10 + tonumber(d)
    end
    return v
end

---------------------------------------------------------------------------
-- Tree building

-- tree:add with a byte range when there is one (mbuf_trace), without
-- (pcapng comments are not packet bytes).
local function add(tree, field, range, value)
    if value == nil then return nil end
    if range then
        return tree:add(field, range, value)
    end
    return tree:add(field, value)
end

local function plural(n, word)
    if n == 1 then return "1 " .. word end
    return n .. " " .. word .. "s"
end

local function step_label(st)
    local parts = { string.format("Step %d: +%.3f ms", st.index, st.offset_ms) }
    for _, k in ipairs({ "netns", "dev", "subsystem", "site" }) do
        if st[k] then parts[#parts + 1] = st[k] end
    end
    local s = table.concat(parts, " ")
    if st.detail then s = s .. ": " .. st.detail end
    return s
end

-- One step subtree. `st` is a parsed step, or nil for a free-form string
-- (`text`), shown as the site.
local function add_step(tree, range, pos, st, text)
    local item
    if range then item = tree:add(pf.step, range) else item = tree:add(pf.step) end
    if st then
        item:set_text(step_label(st))
        add(item, pf.index, range, st.index)
        add(item, pf.offset_ms, range, st.offset_ms)
        add(item, pf.netns, range, st.netns)
        add(item, pf.dev, range, st.dev)
        add(item, pf.subsystem, range, st.subsystem)
        add(item, pf.site, range, st.site)
        add(item, pf.source, range, st.source)
        add(item, pf.detail, range, st.detail)
        if is_verdict(st) then add(item, pf.verdict, range, st.detail) end
    else
        item:set_text(string.format("Step %d: %s", pos, text))
        add(item, pf.index, range, pos)
        add(item, pf.site, range, text)
    end
    return item
end

---------------------------------------------------------------------------
-- pcapng: postdissector over the packet comments

function pktpath.dissector(tvb, pinfo, tree)
    local ok_fields, comments = pcall(function() return { f_comment() } end)
    if not ok_fields or #comments == 0 then return end
    local id, endtext
    local steps, bad = {}, {}
    local seen = false
    for _, fi in ipairs(comments) do
        local c = tostring(fi.value or "")
        local jid, e = c:match("^pktpath journey #(%d+): (.*)$")
        if jid then
            id, endtext, seen = jid, e, true
        else
            local st = parse_step(c)
            if st then
                steps[#steps + 1] = st
                seen = true
            elseif c:find("\t", 1, true) then
                bad[#bad + 1] = c
            end
        end
    end
    if not seen then return end

    local root = tree:add(pktpath)
    local drop = endtext and end_drop_reason(endtext)
    if not drop then
        for _, st in ipairs(steps) do
            drop = step_drop_reason(st) or drop
        end
    end
    if id then
        add(root, pf.journey, nil, u64(id))
    end
    add(root, pf["end"], nil, endtext)
    add(root, pf.drop_reason, nil, drop)
    add(root, pf.steps, nil, #steps)
    for i, st in ipairs(steps) do
        add_step(root, nil, i - 1, st)
    end
    for _, c in ipairs(bad) do
        root:add_proto_expert_info(ef_comment, "pktpath comment line not understood: " .. c)
    end
    local summary = "pktpath"
    if id then summary = summary .. " #" .. id end
    if drop then summary = summary .. " dropped: " .. drop end
    root:append_text(": " .. (endtext or plural(#steps, "step")))
    pcall(function() pinfo.cols.info:append(" [" .. summary .. "]") end)
end

---------------------------------------------------------------------------
-- DLT_USER0: mbuf_trace records

function mbuf.dissector(tvb, pinfo, tree)
    local total = tvb:len()
    pinfo.cols.protocol = "mbuf_trace"
    local mtree = tree:add(mbuf, tvb())
    local ptree = tree:add(pktpath, tvb())
    local function malformed(range, text)
        if range then
            mtree:add_tvb_expert_info(ef_malformed, range, text)
        else
            mtree:add_proto_expert_info(ef_malformed, text)
        end
        pinfo.cols.info:append(" [Malformed mbuf_trace record: " .. text .. "]")
    end
    if total < 2 then
        malformed(tvb(), string.format("record of %d bytes has no string count", total))
        return total
    end
    local count = tvb(0, 2):le_uint()
    mtree:add_le(mf.count, tvb(0, 2))
    local off = 2
    local n, drop = 0, nil
    local ok = true
    for i = 0, count - 1 do
        if off + 2 > total then
            malformed(off < total and tvb(off) or nil,
                string.format("string %d of %d: length field cut short at offset %d (record is %d bytes)",
                    i, count, off, total))
            ok = false
            break
        end
        local len = tvb(off, 2):le_uint()
        if off + 2 + len > total then
            local lenitem = mtree:add_le(mf.len, tvb(off, 2))
            lenitem:add_tvb_expert_info(ef_malformed, tvb(off, 2),
                string.format("string %d of %d: length %d runs past the record (%d bytes left at offset %d)",
                    i, count, len, total - off - 2, off + 2))
            pinfo.cols.info:append(" [Malformed mbuf_trace record: string length past the end]")
            ok = false
            break
        end
        local text, range = "", nil
        if len > 0 then
            range = tvb(off + 2, len)
            -- The length counts the NUL; tolerate strings without one.
            text = range:raw()
            local nul = text:find("\0", 1, true)
            if nul then text = text:sub(1, nul - 1) end
        end
        local sitem = mtree:add(mf.string, tvb(off, 2 + len), text)
        sitem:add_le(mf.len, tvb(off, 2))
        local st = parse_step(text)
        add_step(ptree, range, i, st, text)
        if st then drop = step_drop_reason(st) or drop end
        n = n + 1
        off = off + 2 + len
    end
    ptree:add(pf.steps, n)
    if drop then ptree:add(pf.drop_reason, drop) end
    ptree:append_text(": " .. plural(n, "step"))
    if ok and off < total then
        local frame = tvb(off):tvb()
        if eth then
            eth:call(frame, pinfo, tree)
        else
            Dissector.get("data"):call(frame, pinfo, tree)
        end
    end
    local summary = "pktpath: " .. plural(n, "step")
    if drop then summary = summary .. ", dropped: " .. drop end
    pinfo.cols.info:append(" [" .. summary .. "]")
    return total
end

register_postdissector(pktpath)
DissectorTable.get("wtap_encap"):add((wtap_encaps or wtap).USER0, mbuf)
