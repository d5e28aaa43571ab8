-- HAProxy actions for socket-proxy/receiver.cfg: the three calls of rollback_image that
-- change names and containers, held to what a rollback does (receiver/executor/
-- docker_rollback.py). Each sets a txn variable to "yes" or "no" ("no" on any error):
--
--   http-request lua.autofix_rename_ok /var/run/docker.sock autofix.enable   (txn.rename_ok)
--   http-request lua.autofix_create_ok /var/run/docker.sock autofix.enable   (txn.create_ok)
--   http-request lua.autofix_update_ok /var/run/docker.sock autofix.enable   (txn.update_ok)
--
-- rename: POST /containers/<full id>/rename?name=NEW of a container dockerd lists with the
-- opt-in label, where NEW is its own name N plus ".autofix-quarantine-<UTC stamp>" or
-- ".autofix-rollback-failed-<UTC stamp>", or N is "B.autofix-quarantine-<stamp>" and NEW
-- is B (giving the original its name back).
-- create: POST /containers/create?name=X with a body that (1) is strict JSON with no key
-- twice in any case (Go's decoder takes the last, case-insensitively) and ASCII keys,
-- (2) has only a container's Config keys plus HostConfig and NetworkingConfig, (3) names
-- an image by id and carries the opt-in label, and (4) matches the newest container named
-- "X.autofix-quarantine-<stamp>" that is opted in and stopped: HostConfig equal to its
-- HostConfig, key for key; User its User; MacAddress absent or its own; NetworkingConfig
-- absent or one endpoint on its own network mode, with only its IPAMConfig and Aliases
-- among its own endpoint's Aliases (never another service's DNS name).
-- update: POST /containers/<full id>/update (no query) of a stopped container dockerd
-- lists with the opt-in label and named "B.autofix-quarantine-<stamp>"; receiver.cfg pins
-- the body to exactly {"RestartPolicy": {"Name": "no"}} (it never starts again by itself).

local STAMP = "%d%d%d%d%d%d%d%dT%d%d%d%d%d%dZ"
local QUARANTINE = ".autofix-quarantine-"
local FAILED = ".autofix-rollback-failed-"
-- A container's Config as the create endpoint reads it, plus the two nested blocks.
local CREATE_KEYS = {}
for _, key in ipairs({"Hostname", "Domainname", "User", "AttachStdin", "AttachStdout",
        "AttachStderr", "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd",
        "Healthcheck", "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint",
        "NetworkDisabled", "MacAddress", "Labels", "StopSignal", "StopTimeout", "Shell",
        "HostConfig", "NetworkingConfig"}) do
    CREATE_KEYS[key] = true
end

-- ---------------------------------------------------------------- strict JSON decoding
local NULL, OBJECT, ARRAY = {}, {}, {}

local function fail(msg) error({json = msg}, 0) end

local function skip(text, pos) return text:find("[^ \t\r\n]", pos) or #text + 1 end

local function utf8_of(code)
    if code < 0x80 then return string.char(code) end
    return utf8.char(code)
end

local function read_string(text, pos)
    local out, i = {}, pos + 1
    while true do
        local char = text:sub(i, i)
        if char == "" then fail("unterminated string") end
        if char == '"' then return table.concat(out), i + 1 end
        if char:byte() < 0x20 then fail("control character in a string") end
        if char == "\\" then
            local esc = text:sub(i + 1, i + 1)
            local simple = ({['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f",
                             n = "\n", r = "\r", t = "\t"})[esc]
            if simple then
                out[#out + 1], i = simple, i + 2
            elseif esc == "u" and text:sub(i + 2, i + 5):match("^%x%x%x%x$") then
                local code = tonumber(text:sub(i + 2, i + 5), 16)
                if code >= 0xD800 and code <= 0xDFFF then fail("surrogate escape") end
                out[#out + 1], i = utf8_of(code), i + 6
            else
                fail("bad escape")
            end
        else
            out[#out + 1], i = char, i + 1
        end
    end
end

local read_value

local function read_object(text, pos)
    local obj, seen = setmetatable({}, OBJECT), {}
    pos = skip(text, pos + 1)
    if text:sub(pos, pos) == "}" then return obj, pos + 1 end
    while true do
        if text:sub(pos, pos) ~= '"' then fail("expected a key") end
        local key
        key, pos = read_string(text, pos)
        if key:find("[\128-\255]") then fail("non-ASCII key") end
        if seen[key:lower()] then fail("duplicate key " .. key) end
        seen[key:lower()] = true
        pos = skip(text, pos)
        if text:sub(pos, pos) ~= ":" then fail("expected ':'") end
        obj[key], pos = read_value(text, skip(text, pos + 1))
        pos = skip(text, pos)
        local sep = text:sub(pos, pos)
        if sep == "}" then return obj, pos + 1 end
        if sep ~= "," then fail("expected ',' or '}'") end
        pos = skip(text, pos + 1)
    end
end

local function read_array(text, pos)
    local arr = setmetatable({}, ARRAY)
    pos = skip(text, pos + 1)
    if text:sub(pos, pos) == "]" then return arr, pos + 1 end
    while true do
        arr[#arr + 1], pos = read_value(text, pos)
        pos = skip(text, pos)
        local sep = text:sub(pos, pos)
        if sep == "]" then return arr, pos + 1 end
        if sep ~= "," then fail("expected ',' or ']'") end
        pos = skip(text, pos + 1)
    end
end

read_value = function(text, pos)
    pos = skip(text, pos)
    local char = text:sub(pos, pos)
    if char == "{" then return read_object(text, pos) end
    if char == "[" then return read_array(text, pos) end
    if char == '"' then return read_string(text, pos) end
    for word, value in pairs({["true"] = true, ["false"] = false, null = NULL}) do
        if text:sub(pos, pos + #word - 1) == word then return value, pos + #word end
    end
    local number = text:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if number and tonumber(number) then return tonumber(number), pos + #number end
    fail("unexpected character at " .. pos)
end

local function decode(text)
    local ok, value, pos = pcall(read_value, text, 1)
    if not ok or skip(text, pos) <= #text then return nil end
    return value
end

local function kind(value)
    local meta = type(value) == "table" and getmetatable(value)
    return (meta == OBJECT and "object") or (meta == ARRAY and "array") or type(value)
end

local function equal(a, b)
    if kind(a) ~= kind(b) then return false end
    if kind(a) == "array" then
        if #a ~= #b then return false end
        for i = 1, #a do if not equal(a[i], b[i]) then return false end end
        return true
    end
    if kind(a) == "object" then
        for key, value in pairs(a) do if not equal(value, b[key]) then return false end end
        for key in pairs(b) do if a[key] == nil then return false end end
        return true
    end
    return a == b
end

-- ---------------------------------------------------------------- asking dockerd

local function urlencode(text)
    return (text:gsub("[^%w%-%._~]", function(char)
        return string.format("%%%02X", string.byte(char))
    end))
end

local function docker_get(socket_path, path)
    local sock = core.tcp()
    sock:settimeout(5)
    if not sock:connect("unix@" .. socket_path) then return nil end
    sock:send("GET " .. path .. " HTTP/1.0\r\nHost: docker\r\n\r\n")
    local answer = sock:receive("*a")
    sock:close()
    if answer == nil or not answer:match("^HTTP/1%.%d 200 ") then return nil end
    local body = answer:match("\r\n\r\n(.*)$")
    return body and decode(body)
end

local function list(socket_path, version, filters)
    local found = docker_get(socket_path, "/v" .. version .. "/containers/json?all=1&filters="
                             .. urlencode(filters))
    return kind(found) == "array" and found or nil
end

-- ---------------------------------------------------------------- rename

local function rename_ok(txn, socket_path, label)
    local version, id = txn.sf:path():match("^/v(1%.%d%d)/containers/([0-9a-f]+)/rename$")
    local new = (txn.sf:query() or ""):match("^name=([%w][%w_.-]*)$")
    if not (id and #id == 64 and new and label:match("^[%w._/-]+$")) then return false end
    local found = list(socket_path, version,
                       '{"id":["' .. id .. '"],"label":["' .. label .. '=true"]}')
    if not found or #found ~= 1 or kind(found[1].Names) ~= "array" then return false end
    local current = tostring(found[1].Names[1] or ""):match("^/([%w][%w_.-]*)$")
    if current == nil then return false end
    local suffix = new:sub(1, #current) == current and new:sub(#current + 1) or ""
    for _, kept in ipairs({QUARANTINE, FAILED}) do
        if suffix:sub(1, #kept) == kept and suffix:sub(#kept + 1):match("^" .. STAMP .. "$") then
            return true
        end
    end
    local stamp = current:sub(#new + 1)
    return current:sub(1, #new) == new and stamp:sub(1, #QUARANTINE) == QUARANTINE
        and stamp:sub(#QUARANTINE + 1):match("^" .. STAMP .. "$") ~= nil
end

-- ---------------------------------------------------------------- update

local function update_ok(txn, socket_path, label)
    local version, id = txn.sf:path():match("^/v(1%.%d%d)/containers/([0-9a-f]+)/update$")
    if not (id and #id == 64 and (txn.sf:query() or "") == ""
            and label:match("^[%w._/-]+$")) then
        return false
    end
    local found = list(socket_path, version, '{"id":["' .. id .. '"],"label":["' .. label
                       .. '=true"],"status":["created","exited"]}')
    if not found or #found ~= 1 or kind(found[1].Names) ~= "array" then return false end
    local current = tostring(found[1].Names[1] or "")
    local base, stamp = current:match("^/([%w][%w_.-]*)%.autofix%-quarantine%-(.*)$")
    return base ~= nil and stamp:match("^" .. STAMP .. "$") ~= nil
end

-- ---------------------------------------------------------------- create

local function content_length_is(txn, size)
    local headers = txn.http:req_get_headers()
    local length = headers["content-length"]
    return headers["transfer-encoding"] == nil and length ~= nil and length[1] == nil
        and tonumber(length[0]) == size
end

local function quarantined(socket_path, version, label, name)
    local pattern = "^/" .. name:gsub("%.", "\\\\.") .. "\\\\.autofix-quarantine-[0-9]{8}T[0-9]{6}Z$"
    local found = list(socket_path, version, '{"name":["' .. pattern .. '"],"label":["'
                       .. label .. '=true"],"status":["created","exited"]}')
    local newest
    for _, row in ipairs(found or {}) do
        local row_name = kind(row.Names) == "array" and row.Names[1]
        if type(row_name) == "string" and (newest == nil or row_name > newest.name) then
            newest = {name = row_name, id = row.Id}
        end
    end
    if newest == nil or type(newest.id) ~= "string" or not newest.id:match("^%x+$") then
        return nil
    end
    return docker_get(socket_path, "/v" .. version .. "/containers/" .. newest.id .. "/json")
end

local function networking_ok(networking, host, settings)
    if networking == nil then return true end
    if kind(networking) ~= "object" then return false end
    for key in pairs(networking) do if key ~= "EndpointsConfig" then return false end end
    local endpoints = networking.EndpointsConfig
    if endpoints == nil then return true end
    if kind(endpoints) ~= "object" then return false end
    local networks = kind(settings) == "object" and settings.Networks or nil
    for mode, endpoint in pairs(endpoints) do
        if mode ~= host.NetworkMode or kind(endpoint) ~= "object" then return false end
        local own = kind(networks) == "object" and networks[mode] or nil
        local own_ipam = kind(own) == "object" and own.IPAMConfig or NULL
        for key, value in pairs(endpoint) do
            if key == "IPAMConfig" then
                if not equal(value, own_ipam) then return false end
            elseif key == "Aliases" then
                -- Only its own names: never another service's DNS name on that network.
                if kind(value) ~= "array" then return false end
                local own_aliases = {}
                local listed = kind(own) == "object" and own.Aliases or nil
                for _, alias in ipairs(kind(listed) == "array" and listed or {}) do
                    if type(alias) == "string" then own_aliases[alias] = true end
                end
                for _, alias in ipairs(value) do
                    if type(alias) ~= "string" or not own_aliases[alias] then return false end
                end
            else
                return false
            end
        end
    end
    return true
end

local function create_ok(txn, socket_path, label)
    local version = txn.sf:path():match("^/v(1%.%d%d)/containers/create$")
    local name = (txn.sf:query() or ""):match("^name=([%w][%w_.-]*)$")
    local text = txn.f:req_body()
    if not (version and name and text and label:match("^[%w._/-]+$")
            and content_length_is(txn, #text)) then
        return false
    end
    local body = decode(text)
    if kind(body) ~= "object" then return false end
    for key in pairs(body) do if not CREATE_KEYS[key] then return false end end
    if type(body.Image) ~= "string" or not body.Image:match("^sha256:" .. ("%x"):rep(64) .. "$")
            or kind(body.Labels) ~= "object" or body.Labels[label] ~= "true"
            or kind(body.HostConfig) ~= "object" then
        return false
    end
    local old = quarantined(socket_path, version, label, name)
    if kind(old) ~= "object" or kind(old.Config) ~= "object" then return false end
    local user = old.Config.User or ""
    return equal(body.HostConfig, old.HostConfig)
        and (body.User == user or (body.User == nil and user == ""))
        and (body.MacAddress == nil or body.MacAddress == old.Config.MacAddress)
        and networking_ok(body.NetworkingConfig, body.HostConfig, old.NetworkSettings)
end

local function as_action(var, check)
    return function(txn, socket_path, label)
        txn:set_var(var, "no")
        local ok, allowed = pcall(check, txn, socket_path, label)
        if ok and allowed then txn:set_var(var, "yes") end
    end
end

core.register_action("autofix_rename_ok", { "http-req" },
                     as_action("txn.rename_ok", rename_ok), 2)
core.register_action("autofix_create_ok", { "http-req" },
                     as_action("txn.create_ok", create_ok), 2)
core.register_action("autofix_update_ok", { "http-req" },
                     as_action("txn.update_ok", update_ok), 2)
