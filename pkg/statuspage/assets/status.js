// health-agent status page: refreshes the server-rendered page from the JSON endpoints.
// Every value goes into the DOM as text (textContent, setAttribute), never as HTML.
(function () {
  'use strict';

  var body = document.body;
  var full = body.getAttribute('data-mode') === 'full';
  var every = parseInt(body.getAttribute('data-refresh-ms'), 10) || 5000;

  // The same words as the server's first paint.
  var headlines = {
    healthy: 'All systems healthy',
    degraded: 'Degraded: serving, but something is not right',
    unhealthy: 'Unhealthy: not ready to serve'
  };

  function $(id) { return document.getElementById(id); }

  // el builds an element: attrs are attributes, children are nodes or strings (as text).
  function el(tag, attrs) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) {
      if (Object.prototype.hasOwnProperty.call(attrs, k) && attrs[k] !== undefined && attrs[k] !== null) {
        e.setAttribute(k, String(attrs[k]));
      }
    }
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === undefined || c === null || c === false) continue;
      e.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function text(id, s) { var e = $(id); if (e) e.textContent = s; }

  // cls keeps a value usable as a class name: statuses and states only ever are [a-z_].
  function cls(s) { return String(s || '').toLowerCase().replace(/[^a-z_]/g, ''); }

  function rfc3339(t) { return new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z'); }

  // age formats milliseconds like the server: 42s, 3m12s, 2h5m, 3d4h.
  function age(ms) {
    var s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm' + (s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h' + Math.floor((s % 3600) / 60) + 'm';
    return Math.floor(s / 86400) + 'd' + Math.floor((s % 86400) / 3600) + 'h';
  }

  function latency(ms) {
    if (ms < 10) return ms.toFixed(1) + ' ms';
    if (ms < 1000) return Math.floor(ms) + ' ms';
    return (ms / 1000).toFixed(2) + ' s';
  }

  function retry(b) {
    if (b.state === 'HALF_OPEN') return 'trying now';
    if (b.state !== 'OPEN') return '\u2014';
    if (b.retryDue || b.remainingDelayMs <= 0) return 'at the next execution';
    if (b.remainingDelayMs < 1000) return 'in <1s';
    return 'in ' + age(b.remainingDelayMs);
  }

  // get fetches one endpoint's envelope. Health endpoints answer 503 with a valid body when unhealthy.
  function get(path) {
    return fetch(path, { cache: 'no-store', credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) {
        if (r.status === 401) { var e = new Error('unauthorized'); e.unauthorized = true; throw e; }
        return r.json().then(function (j) {
          if (!j || !j.success || !j.data) throw new Error(path + ': HTTP ' + r.status);
          return j;
        });
      });
  }

  function ready() {
    return fetch('readyz', { cache: 'no-store', credentials: 'same-origin' }).then(function (r) { return r.ok; });
  }

  function renderBanner(health, isReady, shuttingDown) {
    var d = health.data, overall = cls(d.enhanced.overall), b = $('banner');
    var headline = headlines[overall] || overall;
    if (d.status === 'starting') headline = 'Starting: waiting for critical probes to pass';
    if (shuttingDown) headline = 'Shutting down';
    b.className = 'banner status-' + overall;
    b.setAttribute('data-status', overall);
    text('overall', overall);
    text('headline', headline);
    text('ready', isReady ? 'yes' : 'no');
    text('version', d.version || '\u2014');
    text('uptime', age((d.uptime || 0) * 1000));
    var at = d.performance && d.performance.snapshotBuiltAt;
    if (at) { var u = $('updated'); u.setAttribute('datetime', rfc3339(at)); u.textContent = rfc3339(at); }
    document.title = overall + ' \u00b7 health-agent';
  }

  function strip(label, points, classOf, titleOf) {
    var s = el('span', { 'class': 'strip', role: 'img', 'aria-label': label });
    (points || []).forEach(function (p) { s.appendChild(el('span', { 'class': 'cell ' + classOf(p), title: titleOf(p) })); });
    return s;
  }

  function statusPill(status) { return el('span', { 'class': 'pill status-' + cls(status) }, status); }

  function replaceRows(id, rows) {
    var tb = $(id);
    while (tb.firstChild) tb.removeChild(tb.firstChild);
    rows.forEach(function (r) { tb.appendChild(r); });
  }

  function renderProbesFull(detailed) {
    var d = detailed.data, services = d.health.services, now = Date.parse(detailed.timestamp);
    var names = (d.container.order || []).filter(function (n) { return services[n]; });
    Object.keys(services).sort().forEach(function (n) { if (names.indexOf(n) < 0) names.push(n); });
    replaceRows('probe-rows', names.map(function (name) {
      var s = services[name], checked = s.lastChecked;
      var reason = el('td', { 'class': 'reason' }, s.reason || '');
      if (s.dependsOn && s.dependsOn.length) reason.appendChild(el('span', { 'class': 'deps' }, 'depends on ' + s.dependsOn.join(', ')));
      return el('tr', { 'data-probe': name, 'data-status': s.status },
        el('td', { 'class': 'name' }, name, ' ', el('span', { 'class': 'kind' }, s.kind)),
        el('td', null, statusPill(s.status)),
        el('td', null, s.critical ? el('span', { 'class': 'critical' }, 'critical') : el('span', { 'class': 'muted' }, 'no')),
        el('td', { 'class': 'num' }, checked ? latency(s.duration) : '\u2014'),
        el('td', null, checked
          ? el('time', { datetime: rfc3339(checked), title: rfc3339(checked) }, age(now - Date.parse(checked)) + ' ago')
          : el('span', { 'class': 'muted' }, 'never')),
        el('td', null, strip('recent results of ' + name, s.timeline,
          function (p) { return 'status-' + cls(p.status); },
          function (p) { return rfc3339(p.at) + ' ' + p.status; })),
        reason);
    }));
  }

  function renderBreakers(cb, now) {
    var bs = cb.data.breakers, names = Object.keys(bs).sort();
    if (!names.length) {
      replaceRows('breaker-rows', [el('tr', null, el('td', { colspan: 7, 'class': 'muted' }, 'no breakers'))]);
      return;
    }
    replaceRows('breaker-rows', names.map(function (name) {
      var b = bs[name];
      return el('tr', { 'data-breaker': name, 'data-state': b.state },
        el('td', { 'class': 'name' }, name),
        el('td', null, el('span', { 'class': 'pill state-' + cls(b.state) }, b.state)),
        el('td', { 'class': 'num' }, Math.round(b.failureRate) + '%'),
        el('td', null, retry(b)),
        el('td', null, strip('recent executions of ' + name, b.history,
          function (h) { return 'outcome-' + cls(h.outcome); },
          function (h) { return rfc3339(h.at) + ' ' + h.outcome + (h.error ? ': ' + h.error : ''); }),
          ' ', el('span', { 'class': 'muted' }, b.executions + ' in window')),
        el('td', null, (b.probes || []).join(', ')),
        el('td', null, b.lastStateChange ? age(now - Date.parse(b.lastStateChange)) + ' ago' : 'never'));
    }));
  }

  // renderRoutes shows each egress route's last minute of real traffic (the section exists only when
  // the egress proxy is on).
  function renderRoutes(egress, cb) {
    if (!$('route-rows') || !egress) return;
    var states = (cb && cb.data && cb.data.breakers) || {};
    var ms = function (v) { return v > 0 ? latency(v) : '\u2014'; };
    replaceRows('route-rows', (egress.routes || []).map(function (r) {
      var st = states[r.breaker] ? states[r.breaker].state : '';
      return el('tr', { 'data-route': r.route },
        el('td', { 'class': 'name' }, r.route),
        el('td', null, el('code', null, r.prefix)),
        el('td', null, r.breaker, ' ', st ? el('span', { 'class': 'pill state-' + cls(st) }, st) : ''),
        el('td', { 'class': 'num' }, String(r.requests)),
        el('td', { 'class': 'num' }, String(r.errors)),
        el('td', { 'class': 'num' }, String(r.rejected)),
        el('td', { 'class': 'num' }, ms(r.p50Ms)),
        el('td', { 'class': 'num' }, ms(r.p99Ms)));
    }));
  }

  function renderConfig(c) {
    text('config-source', c.source || '');
    text('config-sha', (c.sha256 || '').slice(0, 12));
    text('config-loaded', c.loadedAt ? rfc3339(c.loadedAt) : '\u2014');
    var r = c.lastReload, e = $('config-reload');
    if (!r) { e.className = 'ok'; e.textContent = 'none since start'; return; } // null until a reload is tried
    e.className = r.success ? 'ok' : 'bad';
    e.textContent = (r.success ? 'succeeded' : 'rejected: ' + (r.error || '')) + (r.at ? ' at ' + rfc3339(r.at) : '');
  }

  // renderProbesRestricted shows what the open /api/health tells: each probe's status.
  function renderProbesRestricted(health) {
    var services = health.data.enhanced.services || {};
    var names = [];
    $('probe-rows').querySelectorAll('tr[data-probe]').forEach(function (tr) {
      var n = tr.getAttribute('data-probe');
      if (services[n]) names.push(n);
    });
    Object.keys(services).sort().forEach(function (n) { if (names.indexOf(n) < 0) names.push(n); });
    replaceRows('probe-rows', names.map(function (name) {
      return el('tr', { 'data-probe': name, 'data-status': services[name] },
        el('td', { 'class': 'name' }, name), el('td', null, statusPill(services[name])));
    }));
    var open = (health.data.circuitBreakers && health.data.circuitBreakers.open) || [], p = $('open-breakers');
    while (p.firstChild) p.removeChild(p.firstChild);
    p.appendChild(document.createTextNode('Open: '));
    if (!open.length) p.appendChild(document.createTextNode('none'));
    open.forEach(function (n, i) {
      if (i) p.appendChild(document.createTextNode(', '));
      p.appendChild(el('b', null, n));
    });
  }

  function refreshed(err) {
    var r = $('refresh');
    if (err) {
      r.className = 'refresh stale';
      r.textContent = 'refresh failed at ' + new Date().toLocaleTimeString() + ' (' + err.message + '): showing older data';
    } else {
      r.className = 'refresh';
      r.textContent = 'live';
    }
    body.setAttribute('data-refreshed', String(Date.now()));
  }

  function tick() {
    var work;
    if (full) {
      work = Promise.all([get('api/health'), ready(), get('api/health/detailed'), get('api/health/circuit-breakers')])
        .then(function (r) {
          renderBanner(r[0], r[1], !!r[2].data.shuttingDown);
          renderProbesFull(r[2]);
          renderBreakers(r[3], Date.parse(r[3].timestamp));
          renderRoutes(r[2].data.egress, r[3]);
          renderConfig(r[2].data.config || {});
        });
    } else {
      work = Promise.all([get('api/health'), ready()]).then(function (r) {
        renderBanner(r[0], r[1], false);
        renderProbesRestricted(r[0]);
      });
    }
    work.then(function () { refreshed(null); }, function (err) {
      // A reload set a details token: say so rather than reload, which could loop behind a proxy.
      if (err && err.unauthorized) err = new Error('the details now need the details token; reload the page');
      refreshed(err);
    }).then(function () { setTimeout(tick, every); });
  }

  setTimeout(tick, every);
}());
