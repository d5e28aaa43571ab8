-- HAProxy action for socket-proxy/receiver.cfg: the receiver's own rule, held by the proxy.
-- A call that changes a container (start, stop, restart, kill, exec create) goes through
-- only when that container carries the opt-in label set to "true", so a compromised
-- receiver cannot act on, nor exec into, anything else (the proxies themselves mount the
-- Docker socket).
--
--   http-request lua.autofix_opted_in /var/run/docker.sock autofix.enable
--
-- (the socket, then the label: AUTOFIX_OPT_IN_LABEL) sets txn.opted_in to "yes" when
-- dockerd lists the container of the path, named by its full id (64 hex digits, as the
-- docker SDK's Container methods name it), under the filter label=<label>=true; to "no"
-- otherwise, and on any error. Docker's filter is exact: "True" is not "true" here,
-- though the receiver accepts it. Labels cannot change on a container and an id names
-- one container, so what is checked is what acts.

local function urlencode(text)
    return (text:gsub("[^%w%-%._~]", function(char)
        return string.format("%%%02X", string.byte(char))
    end))
end

local function opted_in(socket_path, label, version, id)
    local filters = '{"id":["' .. id .. '"],"label":["' .. label .. '=true"]}'
    local sock = core.tcp()
    sock:settimeout(5)
    if not sock:connect("unix@" .. socket_path) then
        return false
    end
    sock:send("GET /v" .. version .. "/containers/json?all=1&filters=" .. urlencode(filters)
              .. " HTTP/1.0\r\nHost: docker\r\n\r\n")
    local answer = sock:receive("*a")
    sock:close()
    -- 200 and a list with one container in it; "[]" when the label or the id is missing
    return answer ~= nil and answer:match("^HTTP/1%.%d 200 ") ~= nil
        and answer:match("\r\n\r\n%[{") ~= nil
end

core.register_action("autofix_opted_in", { "http-req" }, function(txn, socket_path, label)
    txn:set_var("txn.opted_in", "no")
    local version, id = txn.sf:path():match("^/v(1%.%d%d)/containers/([0-9a-f]+)/[a-z]+$")
    if id ~= nil and #id == 64 and label:match("^[%w._/-]+$")
            and opted_in(socket_path, label, version, id) then
        txn:set_var("txn.opted_in", "yes")
    end
end, 2)
