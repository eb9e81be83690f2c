"""The dashboard's page: one self-contained HTML document (inline CSS and JS, no CDN).

It draws the snapshot the server embeds in it (in place of ``/*SNAPSHOT*/``) at once, then
listens to ``/events`` (server-sent events) for the next ones, and draws: the counters, the loop-lag chart, the
dhagas grouped by what they wait on (with a search box), and the recent blocking episodes with
their stacks. It must not know how the server makes its snapshots, only their JSON shape.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dhaga monitor</title>
<style>
:root{--bg:#f6f7f9;--panel:#fff;--fg:#1c2330;--muted:#667085;--line:#e4e7ec;--accent:#5b5bd6;
--ok:#12a150;--warn:#d97706;--bad:#dc2626;--chip:#eef0f4;--code:#f2f4f7;--shadow:0 1px 2px rgba(16,24,40,.06)}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--panel:#151b23;--fg:#e6edf3;--muted:#8b949e;
--line:#262f3a;--accent:#8b8cf6;--ok:#3fb950;--warn:#e3b341;--bad:#f85149;--chip:#1f2630;--code:#0f141a;--shadow:none}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{display:flex;align-items:center;gap:14px;padding:14px 22px;border-bottom:1px solid var(--line);background:var(--panel);position:sticky;top:0;z-index:2}
.logo{font-weight:700;font-size:16px;letter-spacing:.2px}.logo span{color:var(--accent)}
.meta{color:var(--muted);font-size:13px}
.live{display:inline-flex;align-items:center;gap:6px;font-size:12px;color:var(--muted);margin-left:auto}
.dot{width:8px;height:8px;border-radius:50%;background:var(--muted)}
.dot.on{background:var(--ok);box-shadow:0 0 0 3px color-mix(in srgb,var(--ok) 25%,transparent)}
.dot.off{background:var(--bad)}
input[type=search]{width:300px;padding:7px 11px;border-radius:8px;border:1px solid var(--line);background:var(--bg);color:var(--fg);font:inherit}
input[type=search]:focus{outline:2px solid var(--accent);outline-offset:-1px}
main{padding:18px 22px;display:grid;gap:16px;grid-template-columns:minmax(0,1.6fr) minmax(0,1fr)}
.cards{grid-column:1/-1;display:grid;grid-template-columns:repeat(6,minmax(0,1fr));gap:12px}
.card,.panel{background:var(--panel);border:1px solid var(--line);border-radius:12px;box-shadow:var(--shadow)}
.card{padding:12px 14px}.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.5px}
.card .v{font-size:24px;font-weight:650;margin-top:2px;font-variant-numeric:tabular-nums}
.card .v small{font-size:13px;color:var(--muted);font-weight:500}
.v.warn{color:var(--warn)}.v.bad{color:var(--bad)}
.panel h2{font-size:13px;margin:0;padding:12px 14px;border-bottom:1px solid var(--line);display:flex;align-items:center;gap:8px;text-transform:uppercase;letter-spacing:.5px;color:var(--muted)}
.panel h2 .n{margin-left:auto;font-weight:500;text-transform:none;letter-spacing:0}
.chartwrap{grid-column:1/-1}
canvas{display:block;width:100%;height:170px}
.legend{display:flex;gap:14px;font-size:12px;color:var(--muted);padding:0 14px 10px}
.sw{display:inline-block;width:10px;height:3px;border-radius:2px;margin-right:5px;vertical-align:middle}
.group{border-bottom:1px solid var(--line)}.group:last-child{border-bottom:0}
.gh{display:flex;align-items:center;gap:10px;padding:9px 14px;cursor:pointer;user-select:none}
.gh:hover{background:var(--chip)}
.gh .t{font-weight:600}.gh .c{margin-left:auto;color:var(--muted);font-variant-numeric:tabular-nums}
.badge{font-size:11px;padding:2px 8px;border-radius:999px;background:var(--chip);color:var(--muted);font-weight:600}
.b-running{background:color-mix(in srgb,var(--ok) 18%,transparent);color:var(--ok)}
.b-parked{background:color-mix(in srgb,var(--accent) 16%,transparent);color:var(--accent)}
.b-runnable,.b-new{background:color-mix(in srgb,var(--warn) 18%,transparent);color:var(--warn)}
.chev{transition:transform .15s;color:var(--muted)}.group.open .chev{transform:rotate(90deg)}
.rows{display:none}.group.open .rows{display:block}
.row{padding:7px 14px 7px 34px;border-top:1px dashed var(--line);cursor:pointer}
.row:hover{background:var(--chip)}
.row .nm{font-weight:600;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px}
.row .sub{color:var(--muted);font-size:12px;display:flex;gap:12px;flex-wrap:wrap}
.row .on{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
pre{margin:6px 0 2px;padding:9px 11px;background:var(--code);border:1px solid var(--line);border-radius:8px;overflow:auto;font-size:12px;line-height:1.5;display:none}
.row.open pre,.ep.open pre{display:block}
.hot{color:var(--bad);font-weight:600}
.ep{padding:10px 14px;border-bottom:1px solid var(--line);cursor:pointer}.ep:last-child{border-bottom:0}
.ep .top{display:flex;gap:8px;align-items:baseline}.ep .who{font-weight:600;font-family:ui-monospace,Menlo,monospace;font-size:12.5px}
.ep .dur{margin-left:auto;color:var(--bad);font-weight:650;font-variant-numeric:tabular-nums}
.ep .where{color:var(--muted);font-size:12px;font-family:ui-monospace,Menlo,monospace;word-break:break-all}
.empty{padding:18px 14px;color:var(--muted)}
table{width:100%;border-collapse:collapse;font-size:13px}th,td{text-align:left;padding:7px 14px;border-bottom:1px solid var(--line)}
th{color:var(--muted);font-weight:500;font-size:12px}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr:last-child td{border-bottom:0}
.side{display:grid;gap:16px;align-content:start}
mark{background:color-mix(in srgb,var(--warn) 35%,transparent);color:inherit;border-radius:2px}
@media (max-width:1000px){main{grid-template-columns:1fr}.cards{grid-template-columns:repeat(3,1fr)}}
</style></head>
<body>
<header>
  <div class="logo">dhaga<span>·</span>monitor</div>
  <div class="meta" id="meta">connecting…</div>
  <input type="search" id="q" placeholder="Search dhagas, waits, files…  ( / )" autocomplete="off">
  <div class="live"><span class="dot" id="dot"></span><span id="livetxt">offline</span></div>
</header>
<main>
  <section class="cards">
    <div class="card"><div class="k">Alive</div><div class="v" id="c-alive">–</div></div>
    <div class="card"><div class="k">Running / runnable</div><div class="v" id="c-run">–</div></div>
    <div class="card"><div class="k">Parked</div><div class="v" id="c-parked">–</div></div>
    <div class="card"><div class="k">Spawned</div><div class="v" id="c-spawned">–</div></div>
    <div class="card"><div class="k">Loop lag p99</div><div class="v" id="c-lag">–</div></div>
    <div class="card"><div class="k">Blocking episodes</div><div class="v" id="c-blocked">–</div></div>
  </section>
  <section class="panel chartwrap">
    <h2>Loop lag <span class="n" id="lagnow"></span></h2>
    <canvas id="chart"></canvas>
    <div class="legend"><span><i class="sw" style="background:var(--accent)"></i>p50</span>
      <span><i class="sw" style="background:var(--bad)"></i>p99</span>
      <span>per second, worst thread, last 2 minutes</span></div>
  </section>
  <section class="panel">
    <h2>Dhagas by what they wait on <span class="n" id="shown"></span></h2>
    <div id="groups"><div class="empty">Waiting for the first snapshot…</div></div>
  </section>
  <div class="side">
    <section class="panel">
      <h2>Recent blocking episodes <span class="n" id="epn"></span></h2>
      <div id="eps"><div class="empty">No dhaga has held its thread. Good.</div></div>
    </section>
    <section class="panel">
      <h2>Threads</h2>
      <table><thead><tr><th>Thread</th><th class="num">alive</th><th class="num">parked</th>
      <th class="num">lag p99</th><th class="num">blocked</th></tr></thead><tbody id="threads"></tbody></table>
    </section>
  </div>
</main>
<script id="initial" type="application/json">/*SNAPSHOT*/</script>
<script>
"use strict";
const $=id=>document.getElementById(id);
const open=new Set(), closed=new Set(), openRows=new Set(), openEps=new Set();
let last=null, history=[];
const esc=s=>String(s==null?"":s).replace(/[&<>"']/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
function ms(s){if(s==null)return"–";if(s<0.001)return(s*1e6).toFixed(0)+" µs";if(s<1)return(s*1e3).toFixed(1)+" ms";return s.toFixed(2)+" s"}
function dur(s){if(s==null)return"";if(s<60)return s.toFixed(1)+"s";if(s<3600)return(s/60).toFixed(1)+"m";return(s/3600).toFixed(1)+"h"}
function kind(d){
  if(d.state==="running")return"Running now";
  if(d.state==="runnable"||d.state==="new")return"Runnable";
  const w=d.waits_on||"";let m;
  if((m=/^fd \d+ \((read|write)\)/.exec(w)))return"Socket "+m[1];
  if(w.startsWith("["))return"Socket (select)";
  if(w.startsWith("join() of <"))return(/^join\(\) of <(\w+)/.exec(w)||[,"Queue"])[1]+".join()";
  if(w==="sleep()")return"Sleeping";
  if(w.startsWith("<Dhaga"))return"Joining a dhaga";
  if((m=/^(\w+)\(/.exec(w)))return m[1]+"()";
  if((m=/^<(\w+)/.exec(w)))return m[1];
  return"Other";
}
function hl(text,q){const t=esc(text);if(!q)return t;const i=t.toLowerCase().indexOf(esc(q).toLowerCase());
  if(i<0)return t;return t.slice(0,i)+"<mark>"+t.slice(i,i+q.length)+"</mark>"+t.slice(i+q.length)}
function short(w){return String(w||"").replace(/^.*\/([^\/]+\/[^\/]+:\d+ in )/,"$1")}
function stackText(st){return st.map(f=>`${f.file}:${f.line} in ${f.function}`+(f.code?`\n    ${f.code}`:"")).join("\n")}
function matches(d,q){if(!q)return true;q=q.toLowerCase();
  return [d.name,d.waits_on,d.where,d.thread_name,d.state,stackText(d.stack)].some(x=>x&&String(x).toLowerCase().includes(q))}
function render(){
  if(!last)return;const s=last,q=$("q").value.trim();
  const sc=s.schedulers;const sum=k=>sc.reduce((a,x)=>a+(x[k]||0),0);
  const lag=Math.max(0,...sc.map(x=>x.loop_lag_p99||0));
  $("c-alive").textContent=sum("alive");
  const running=s.dhagas.filter(d=>d.state==="running").length;
  $("c-run").innerHTML=`${running} <small>/ ${sum("runnable")}</small>`;
  $("c-parked").textContent=sum("parked");
  $("c-spawned").textContent=sum("spawned").toLocaleString();
  const lagEl=$("c-lag");lagEl.textContent=sc.some(x=>x.loop_lag_p99!=null)?ms(lag):"–";
  lagEl.className="v"+(lag>0.1?" bad":lag>0.01?" warn":"");
  const bl=sum("blocked");const be=$("c-blocked");be.textContent=bl;be.className="v"+(bl?" bad":"");
  $("meta").textContent=`pid ${s.pid} · ${sc.length} thread${sc.length==1?"":"s"} · ${new Date(s.time*1000).toLocaleTimeString()}`;
  const shown=s.dhagas.filter(d=>matches(d,q));
  $("shown").textContent=q?`${shown.length} of ${s.total_dhagas} match`:`${s.total_dhagas} live`;
  const groups=new Map();for(const d of shown){const k=kind(d);if(!groups.has(k))groups.set(k,[]);groups.get(k).push(d)}
  const order=[...groups.entries()].sort((a,b)=>b[1].length-a[1].length);
  let html="";
  for(const [k,list] of order){
    const isOpen=open.has(k)||q||shown.length<=20||(list.length<=4&&!closed.has(k));
    list.sort((a,b)=>(b.waiting||0)-(a.waiting||0));
    const state=list[0].state;
    html+=`<div class="group${isOpen?" open":""}" data-g="${esc(k)}"><div class="gh"><span class="chev">▶</span><span class="t">${esc(k)}</span><span class="badge b-${esc(state)}">${esc(state)}</span><span class="c">${list.length}</span></div><div class="rows">`;
    for(const d of list.slice(0,300)){
      const key=d.thread+":"+d.id+":"+d.name;const ro=openRows.has(key);
      const long=false;
      html+=`<div class="row${ro?" open":""}" data-r="${esc(key)}"><div class="nm">${hl(d.name,q)}</div><div class="sub">`+
        (d.waits_on?`<span class="on">${hl(d.waits_on,q)}</span>`:"")+
        (d.waiting!=null?`<span class="${long?"hot":""}">${dur(d.waiting)}</span>`:"")+
        `<span title="${esc(d.where)}">${hl(short(d.where),q)}</span><span>${esc(d.thread_name)}</span></div><pre>${esc(stackText(d.stack))||"(no stack: not started)"}</pre></div>`;
    }
    if(list.length>300)html+=`<div class="empty">${list.length-300} more… narrow with the search box</div>`;
    html+="</div></div>";
  }
  $("groups").innerHTML=html||`<div class="empty">${q?"Nothing matches “"+esc(q)+"”.":"No live dhaga."}</div>`;
  const eps=s.episodes.slice().reverse();$("epn").textContent=eps.length?eps.length:"";
  $("eps").innerHTML=eps.length?eps.map((e,i)=>{const key=e.when+":"+e.thread;return `<div class="ep${openEps.has(key)?" open":""}" data-e="${esc(key)}"><div class="top"><span class="who">${esc(e.dhaga||"loop callback / top level")}</span><span class="dur">${e.duration!=null?ms(e.duration):"≥ "+ms(e.seconds)}</span></div><div class="where" title="${esc(e.where)}">${esc(short(e.where))}</div><div class="where">${esc(e.thread_name)} · ${new Date(e.when*1000).toLocaleTimeString()}</div><pre>${esc(stackText(e.stack))}</pre></div>`}).join(""):`<div class="empty">No dhaga has held its thread. Good.</div>`;
  $("threads").innerHTML=sc.map(x=>`<tr><td>${esc(x.thread_name)}</td><td class="num">${x.alive}</td><td class="num">${x.parked}</td><td class="num">${ms(x.loop_lag_p99)}</td><td class="num">${x.blocked}</td></tr>`).join("");
  drawChart();
}
function drawChart(){
  const c=$("chart"),dpr=window.devicePixelRatio||1,w=c.clientWidth,h=c.clientHeight;
  c.width=w*dpr;c.height=h*dpr;const g=c.getContext("2d");g.scale(dpr,dpr);
  const cs=getComputedStyle(document.documentElement);const col=n=>cs.getPropertyValue(n).trim();
  g.clearRect(0,0,w,h);const padL=54,padR=12,padT=10,padB=20;
  const now=last?last.time:Date.now()/1000,span=120;const pts=history.filter(p=>p.t>now-span);
  let max=Math.max(0.001,...pts.map(p=>p.p99||0))*1.15;
  g.font="11px system-ui,sans-serif";g.fillStyle=col("--muted");g.strokeStyle=col("--line");g.lineWidth=1;
  for(let i=0;i<=3;i++){const y=padT+(h-padT-padB)*i/3;g.beginPath();g.moveTo(padL,y);g.lineTo(w-padR,y);g.stroke();
    g.fillText(ms(max*(1-i/3)),6,y+4)}
  g.fillText("-2 min",padL,h-5);g.fillText("now",w-padR-22,h-5);
  const X=t=>padL+(w-padL-padR)*(1-(now-t)/span),Y=v=>padT+(h-padT-padB)*(1-v/max);
  for(const [key,color] of [["p50","--accent"],["p99","--bad"]]){
    const ps=pts.filter(p=>p[key]!=null);if(!ps.length)continue;
    g.strokeStyle=col(color);g.lineWidth=2;g.beginPath();ps.forEach((p,i)=>i?g.lineTo(X(p.t),Y(p[key])):g.moveTo(X(p.t),Y(p[key])));g.stroke();
    if(key==="p99"){g.globalAlpha=.12;g.fillStyle=col(color);g.lineTo(X(ps[ps.length-1].t),Y(0));g.lineTo(X(ps[0].t),Y(0));g.fill();g.globalAlpha=1}
  }
  if(!pts.length){g.fillStyle=col("--muted");g.fillText("no samples yet",w/2-35,h/2)}
}
function snapshotIn(s){
  last=s;const sc=s.schedulers;
  history=(s.lag_history||[]).map(([t,p50,p99])=>({t,p50,p99}));
  const cur=history.length?history[history.length-1]:null;
  $("lagnow").textContent=cur?`now: p99 ${ms(cur.p99)} · p50 ${ms(cur.p50)}`:"";
  render();
}
document.addEventListener("click",ev=>{
  const gh=ev.target.closest(".gh");if(gh){const el=gh.parentElement,g=el.dataset.g;
    if(el.classList.contains("open")){open.delete(g);closed.add(g)}else{open.add(g);closed.delete(g)}
    el.classList.toggle("open");return}
  const r=ev.target.closest(".row");if(r){const k=r.dataset.r;openRows.has(k)?openRows.delete(k):openRows.add(k);r.classList.toggle("open");return}
  const e=ev.target.closest(".ep");if(e){const k=e.dataset.e;openEps.has(k)?openEps.delete(k):openEps.add(k);e.classList.toggle("open")}
});
$("q").addEventListener("input",render);
document.addEventListener("keydown",e=>{if(e.key==="/"&&document.activeElement!==$("q")){e.preventDefault();$("q").focus()}});
window.addEventListener("resize",drawChart);
function connect(){
  const es=new EventSource("events");
  es.onopen=()=>{$("dot").className="dot on";$("livetxt").textContent="live"};
  es.onmessage=m=>{$("dot").className="dot on";$("livetxt").textContent="live";
    try{snapshotIn(JSON.parse(m.data))}catch(e){console.error(e)}};
  es.onerror=()=>{$("dot").className="dot off";$("livetxt").textContent="reconnecting"};
}
try{const init=$("initial").textContent.trim();if(init&&init[0]==="{")snapshotIn(JSON.parse(init))}catch(e){console.error(e)}
connect();
</script>
</body></html>
"""
