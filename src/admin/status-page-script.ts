// The status page's script, as the browser runs it (plain ES2017, no build step, no library). It fetches
// /api/status and /api/history every few seconds, and /api/spool only with a token the operator typed into the page
// (kept in sessionStorage, sent as a bearer header, never put in a URL or the page). Everything from the API reaches
// the page through textContent or setAttribute, never as HTML.
// No backticks or dollar-brace below: the text sits inside a TypeScript template literal.
export const STATUS_PAGE_SCRIPT = String.raw`
(function () {
  'use strict'
  var REFRESH_MS = 5000
  var TOKEN_KEY = 'mxgate.adminToken'
  var SVGNS = 'http://www.w3.org/2000/svg'
  var COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2', '#bcbd22']
  var POOL_COLOR = '#222'
  var MAX_ENVELOPES = 50
  var SCALE_MIN_ATTEMPTS = 10
  var minutes = (function () {
    var n = Number(new URLSearchParams(location.search).get('minutes'))
    return Number.isInteger(n) && n >= 1 && n <= 30 ? n : 30
  })()
  var rounds = 0
  var colorOf = {}

  function $(id) { return document.getElementById(id) }
  function el(tag, attrs, text) {
    var e = document.createElement(tag)
    if (attrs) for (var k in attrs) e.setAttribute(k, attrs[k])
    if (text !== undefined && text !== null) e.textContent = String(text)
    return e
  }
  function svg(tag, attrs) {
    var e = document.createElementNS(SVGNS, tag)
    for (var k in attrs) e.setAttribute(k, String(attrs[k]))
    return e
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild) }
  function readToken() { try { return sessionStorage.getItem(TOKEN_KEY) } catch (e) { return null } }
  function writeToken(t) {
    try { if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY) } catch (e) {}
  }

  function getJson(path, token) {
    var headers = { accept: 'application/json' }
    if (token) headers.authorization = 'Bearer ' + token
    return fetch(path, { headers: headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' })
      .then(function (r) {
        return r.json().then(
          function (body) { return { status: r.status, body: body } },
          function () { return { status: r.status, body: null } })
      })
  }

  function pct(x) {
    if (x === null || x === undefined) return '\u2013'
    return (x * 100).toFixed(x === 1 || x === 0 ? 0 : 1) + '%'
  }
  function age(ms) {
    var s = Math.max(0, Math.round(ms / 1000))
    if (s < 60) return s + 's'
    var m = Math.floor(s / 60)
    if (m < 60) return m + 'm ' + (s % 60) + 's'
    var h = Math.floor(m / 60)
    if (h < 48) return h + 'h ' + (m % 60) + 'm'
    return Math.floor(h / 24) + 'd ' + (h % 24) + 'h'
  }
  function clock(t) { return new Date(t).toISOString().slice(11, 19) + 'Z' }
  function stamp(t) { return new Date(t).toISOString().replace('T', ' ').slice(0, 19) + 'Z' }
  function size(n) {
    if (n < 1024) return n + ' B'
    if (n < 1048576) return (n / 1024).toFixed(1) + ' KB'
    if (n < 1073741824) return (n / 1048576).toFixed(1) + ' MB'
    return (n / 1073741824).toFixed(1) + ' GB'
  }
  function stateClass(state) {
    if (state === 'admitted') return 'ok'
    if (state === 'probation' || state === 'trial' || state === 'probing' || state === 'draining') return 'warn'
    return 'bad'
  }
  function badge(text, cls) { return el('span', { class: 'badge ' + cls }, text) }

  function ratio(p) { return p.ok + p.fail > 0 ? p.ok / (p.ok + p.fail) : null }
  /**
   * The chart's floor: 90% while every point is above it (a few percent lost must show), else 50%, else 0. Points of
   * fewer than SCALE_MIN_ATTEMPTS attempts (one failure in a quiet step) do not set it; they are drawn at the floor.
   */
  function floorOf(lines) {
    var min = 1
    lines.forEach(function (l) {
      l.points.forEach(function (p) {
        var r = ratio(p)
        if (r !== null && p.ok + p.fail >= SCALE_MIN_ATTEMPTS && r < min) min = r
      })
    })
    return min >= 0.9 ? 0.9 : min >= 0.5 ? 0.5 : 0
  }

  /** One SVG chart: success ratio lines over [from, to), ejections marked. */
  function chart(opts) {
    var W = opts.width, H = opts.height, pad = opts.small ? { l: 2, r: 2, t: 3, b: 3 } : { l: 40, r: 10, t: 16, b: 20 }
    var w = W - pad.l - pad.r, h = H - pad.t - pad.b
    var root = svg('svg', { viewBox: '0 0 ' + W + ' ' + H, width: W, height: H, role: 'img', class: 'chart' })
    root.appendChild(svg('rect', { x: pad.l, y: pad.t, width: w, height: h, class: 'plot' }))
    var span = opts.to - opts.from
    var x = function (t) { return pad.l + ((t - opts.from) / span) * w }
    var y = function (r) { return pad.t + (1 - (r - opts.floor) / (1 - opts.floor)) * h }
    if (!opts.small) {
      var ticks = opts.floor === 0.9 ? [0.9, 0.95, 1] : opts.floor === 0.5 ? [0.5, 0.75, 1] : [0, 0.5, 1]
      ticks.forEach(function (r) {
        root.appendChild(svg('line', { x1: pad.l, x2: pad.l + w, y1: y(r), y2: y(r), class: 'grid' }))
        var label = svg('text', { x: pad.l - 4, y: y(r) + 4, 'text-anchor': 'end', class: 'axis' })
        label.textContent = Math.round(r * 100) + '%'
        root.appendChild(label)
      })
      for (var i = 0; i <= 3; i++) {
        var t = opts.from + (span * i) / 3
        var tl = svg('text', { x: x(t), y: H - 5, 'text-anchor': i === 0 ? 'start' : i === 3 ? 'end' : 'middle', class: 'axis' })
        tl.textContent = clock(t)
        root.appendChild(tl)
      }
    }
    opts.events.forEach(function (ev) {
      if (ev.at < opts.from || ev.at > opts.to) return
      var out = ev.state === 'ejected' || ev.state === 'manual-ejected'
      if (!out) return
      var g = svg('g', { class: 'ejection', 'data-backend': ev.backend })
      var title = svg('title', {})
      title.textContent = clock(ev.at) + ' ' + ev.backend + ' ' + ev.state + (ev.reason ? ': ' + ev.reason : '')
      g.appendChild(title)
      var ex = x(ev.at)
      g.appendChild(svg('line', { x1: ex, x2: ex, y1: pad.t, y2: pad.t + h, stroke: colorOf[ev.backend] || '#c00', class: 'marker' }))
      g.appendChild(svg('path', { d: 'M' + (ex - 4) + ' ' + (pad.t - 1) + ' l8 0 l-4 6 z', fill: colorOf[ev.backend] || '#c00' }))
      root.appendChild(g)
    })
    opts.lines.forEach(function (line) {
      var d = '', run = 0, lone = []
      line.points.forEach(function (p, i) {
        var r = ratio(p)
        if (r === null) { if (run === 1) lone.push(line.points[i - 1]); run = 0; return }
        var px = x(p.at + opts.step / 2), py = y(Math.max(opts.floor, r))
        d += (run === 0 ? 'M' : 'L') + px.toFixed(1) + ' ' + py.toFixed(1) + ' '
        run++
      })
      if (run === 1) lone.push(line.points[line.points.length - 1])
      var attrs = { d: d.trim() || 'M0 0', fill: 'none', stroke: line.color, 'stroke-width': line.width, class: 'line' }
      if (line.dash) attrs['stroke-dasharray'] = line.dash
      var path = svg('path', attrs)
      path.setAttribute('data-line', line.id)
      root.appendChild(path)
      lone.forEach(function (p) {
        root.appendChild(svg('circle', { cx: x(p.at + opts.step / 2), cy: y(Math.max(opts.floor, ratio(p))), r: 2, fill: line.color }))
      })
    })
    return root
  }

  function renderHeader(st) {
    $('node').textContent = st.node
    var flags = $('flags')
    clear(flags)
    flags.appendChild(badge(st.readiness.ready ? 'ready' : 'not ready', st.readiness.ready ? 'ok' : 'bad'))
    flags.lastChild.setAttribute('data-field', 'readiness')
    if (!st.readiness.ready) flags.appendChild(el('span', { class: 'why', 'data-field': 'readiness-reasons' }, st.readiness.reasons.join('; ')))
    var redis = !st.redis.configured ? badge('Redis: none (state is this node\u2019s own)', 'muted') : st.redis.up ? badge('Redis up', 'ok') : badge('Redis down: running alone', 'bad')
    redis.setAttribute('data-field', 'redis')
    flags.appendChild(redis)
    if (st.detector.mode === 'observe') flags.appendChild(badge('detector: observe only', 'warn'))
    if (st.detector.budgetFrozen) flags.appendChild(badge('ejection budget frozen', 'bad'))
    if (st.detector.poolDegraded) flags.appendChild(badge('pool degraded', 'bad'))
  }

  function renderBackends(st, hist, floor) {
    var body = $('backends')
    clear(body)
    st.backends.forEach(function (b) {
      var tr = el('tr', { 'data-backend': b.id })
      var name = el('td', { class: 'id' })
      name.appendChild(el('span', { class: 'swatch', style: 'background:' + colorOf[b.id] }))
      name.appendChild(el('span', null, b.id))
      name.appendChild(el('div', { class: 'addr' }, b.address))
      tr.appendChild(name)
      var state = el('td', { 'data-field': 'state' })
      state.appendChild(badge(b.state, stateClass(b.state)))
      tr.appendChild(state)
      var why = b.reason || ''
      if (b.by) why += (why ? ' ' : '') + '(by ' + b.by + ')'
      if (b.until) why += (why ? ' ' : '') + '\u2014 until ' + stamp(b.until)
      tr.appendChild(el('td', { 'data-field': 'reason', class: 'reason' }, why))
      tr.appendChild(el('td', { 'data-field': 'since', title: stamp(b.since) }, age(st.now - b.since) + ' ago'))
      tr.appendChild(el('td', { 'data-field': 'success', class: 'num' }, pct(b.successRatio)))
      tr.appendChild(el('td', { class: 'num' }, b.messagesPerMinute.toFixed(1)))
      tr.appendChild(el('td', { class: 'num' }, b.inFlight))
      var spark = el('td', { class: 'spark' })
      if (hist && hist.backends[b.id]) {
        spark.appendChild(chart({
          width: 180, height: 36, small: true, from: hist.from, to: hist.to, step: hist.stepMs, floor: floor,
          events: hist.events.filter(function (e) { return e.backend === b.id }),
          lines: [
            { id: 'pool', points: hist.pool, color: '#aaa', width: 1.5 },
            { id: b.id, points: hist.backends[b.id], color: colorOf[b.id], width: 1.5 },
          ],
        }))
      }
      tr.appendChild(spark)
      body.appendChild(tr)
    })
  }

  function renderChart(st, hist, floor) {
    var box = $('chart')
    clear(box)
    if (!hist) return
    var lines = st.backends.map(function (b) {
      return { id: b.id, points: hist.backends[b.id] || [], color: colorOf[b.id], width: 1.5 }
    })
    lines.push({ id: 'pool', points: hist.pool, color: POOL_COLOR, width: 2.5, dash: '6 3' })
    box.appendChild(chart({ width: 760, height: 220, from: hist.from, to: hist.to, step: hist.stepMs, floor: floor, events: hist.events, lines: lines }))
    var legend = el('div', { class: 'legend' })
    lines.forEach(function (l) {
      var item = el('span', { class: 'item' })
      item.appendChild(el('span', { class: l.id === 'pool' ? 'swatch pool' : 'swatch', style: 'background:' + l.color }))
      item.appendChild(document.createTextNode(l.id === 'pool' ? 'pool' : l.id))
      legend.appendChild(item)
    })
    legend.appendChild(el('span', { class: 'item muted' }, '\u25BC ejection   step ' + age(hist.stepMs)))
    box.appendChild(legend)
    var evs = $('events')
    clear(evs)
    hist.events.slice(-20).reverse().forEach(function (ev) {
      var li = el('li', { 'data-backend': ev.backend })
      li.appendChild(el('span', { class: 'when' }, clock(ev.at)))
      li.appendChild(el('strong', null, ev.backend))
      li.appendChild(badge(ev.state, stateClass(ev.state)))
      if (ev.reason) li.appendChild(el('span', { class: 'reason' }, ev.reason))
      evs.appendChild(li)
    })
    if (!evs.firstChild) evs.appendChild(el('li', { class: 'muted' }, 'no state changes in this window'))
  }

  function renderSpool(st) {
    var s = st.spool
    $('spool-messages').textContent = s.open ? s.messages : 'recovering'
    $('spool-bytes').textContent = size(s.bytes)
    $('spool-held').textContent = s.held
    $('spool-oldest').textContent = s.oldestReceivedAt === null ? '\u2013' : age(st.now - s.oldestReceivedAt)
    var full = $('spool-full')
    clear(full)
    full.appendChild(s.full ? badge('full: refusing mail', 'bad') : badge('taking mail', 'ok'))
  }

  function renderEnvelopes(reply, now) {
    var box = $('envelopes')
    clear(box)
    if (reply === null) {
      box.appendChild(el('p', { class: 'muted', 'data-field': 'envelopes-locked' }, 'Envelope addresses need the admin token: enter it above (kept in this tab only).'))
      return
    }
    if (reply.status !== 200) {
      var msg = reply.body && reply.body.error ? reply.body.error : 'HTTP ' + reply.status
      box.appendChild(el('p', { class: 'error', 'data-field': 'envelopes-error' }, 'The token was refused: ' + msg))
      return
    }
    var list = reply.body.messages
    if (list.length === 0) { box.appendChild(el('p', { class: 'muted' }, 'The spool is empty.')); return }
    var table = el('table', { class: 'envelopes' })
    var head = el('tr')
    ;['id', 'from', 'to', 'age', 'attempts', 'next', 'last error'].forEach(function (h) { head.appendChild(el('th', null, h)) })
    table.appendChild(head)
    list.slice().sort(function (a, b) { return a.receivedAt - b.receivedAt }).slice(0, MAX_ENVELOPES).forEach(function (m) {
      var tr = el('tr', { 'data-spool-id': m.id })
      tr.appendChild(el('td', { class: 'mono' }, m.id))
      tr.appendChild(el('td', null, m.from || '<>'))
      tr.appendChild(el('td', null, m.pending.join(', ')))
      tr.appendChild(el('td', null, age(now - m.receivedAt)))
      tr.appendChild(el('td', { class: 'num' }, m.attempts))
      tr.appendChild(el('td', null, m.held ? 'held' : 'in ' + age(m.nextAttemptAt - now)))
      tr.appendChild(el('td', { class: 'reason' }, m.lastError || ''))
      table.appendChild(tr)
    })
    box.appendChild(table)
    if (list.length > MAX_ENVELOPES) box.appendChild(el('p', { class: 'muted' }, 'oldest ' + MAX_ENVELOPES + ' of ' + list.length + ' shown'))
  }

  function refresh() {
    var token = readToken()
    $('token-state').textContent = token ? 'token set for this tab' : 'no token: counts only'
    $('forget').hidden = !token
    return Promise.all([
      getJson('/api/status'),
      getJson('/api/history?minutes=' + minutes),
      token ? getJson('/api/spool', token) : Promise.resolve(null),
    ]).then(function (r) {
      var st = r[0].body, hist = r[1].status === 200 ? r[1].body : null
      if (r[0].status !== 200 || !st) throw new Error('/api/status answered ' + r[0].status)
      st.backends.forEach(function (b, i) { colorOf[b.id] = COLORS[i % COLORS.length] })
      var floor = hist ? floorOf([{ points: hist.pool }].concat(st.backends.map(function (b) { return { points: hist.backends[b.id] || [] } }))) : 0.9
      renderHeader(st)
      renderBackends(st, hist, floor)
      renderChart(st, hist, floor)
      renderSpool(st)
      renderEnvelopes(r[2], st.now)
      $('problem').hidden = true
      $('updated').textContent = 'updated ' + clock(st.now) + ' (every ' + REFRESH_MS / 1000 + ' s)'
    }).catch(function (err) {
      $('problem').hidden = false
      $('problem').textContent = 'The node does not answer (' + (err && err.message ? err.message : String(err)) + '); showing the last data.'
    }).then(function () {
      rounds++
      document.body.setAttribute('data-rounds', String(rounds))
    })
  }

  $('window').textContent = minutes + ' min'
  $('token-form').addEventListener('submit', function (ev) {
    ev.preventDefault()
    var input = $('token')
    var t = input.value.trim()
    input.value = ''
    writeToken(t)
    refresh()
  })
  $('forget').addEventListener('click', function () { writeToken(null); refresh() })
  refresh()
  setInterval(refresh, REFRESH_MS)
})()
`
