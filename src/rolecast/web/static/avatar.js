// rolecast's avatar on the web page (issue 22): the character's mouth follows its voice.
//
// The page's stage (#rc-avatar .rc-stage, written by rolecast/web/stage.py) holds the
// avatar's frames (a sprite) or a canvas (a VRM model) and, once a reply is spoken, the URL
// of its WAV (data-say). The server wrote the mouth's timeline beside the WAV
// (NAME.mouth.json: the opening, shape and, for Japanese, vowel of every 1/30 s), so nothing
// is analysed here: each animation frame reads the playing audio's currentTime and shows the
// frame of the timeline at that time. Any audio on the page is followed (the stage's own, or
// a reply's player in the chat), found by its file name. Blinks come at random intervals
// (2-6 s); the stage breathes (CSS) when idle.
//
// window.rolecastAvatar keeps what tests read: samples (audio time, shape, frame shown) and
// the frame times while talking (fps()).
(() => {
  if (window.rolecastAvatar) return;
  const A = (window.rolecastAvatar = {
    timelines: {}, // WAV file name -> timeline (or a pending promise)
    playing: null, // the media element last started
    said: new Set(), // data-say URLs already played
    samples: [],
    talkTimes: [],
    shown: null,
    nextBlink: performance.now() + 2500,
    blinkUntil: 0,
    expression: null,
    expressionUntil: 0,
    vrm: null,
    vrmLoading: null,
  });
  const MAX_SAMPLES = 20000;

  const fileName = (url) => {
    try {
      return decodeURIComponent(new URL(url, location.href).pathname.split("/").pop() || "");
    } catch (e) {
      return "";
    }
  };
  const stage = () => document.querySelector("#rc-avatar .rc-stage");

  function timelineOf(media, st) {
    const name = fileName(media.currentSrc || media.src);
    if (!name.endsWith(".wav")) return null;
    const known = A.timelines[name];
    if (known !== undefined) return known instanceof Promise ? null : known;
    if (!st || !st.dataset.timelines) return null;
    const url = st.dataset.timelines + encodeURIComponent(name.replace(/\.wav$/, ".mouth.json"));
    A.timelines[name] = fetch(url)
      .then((r) => (r.ok ? r.json() : false))
      .catch(() => false)
      .then((t) => (A.timelines[name] = t));
    return null;
  }

  // every media element that starts playing, in the page or not (players may keep theirs
  // out of the document)
  const play = HTMLMediaElement.prototype.play;
  HTMLMediaElement.prototype.play = function (...args) {
    A.playing = this;
    return play.apply(this, args);
  };
  document.addEventListener(
    "play",
    (e) => {
      if (e.target instanceof HTMLMediaElement) A.playing = e.target;
    },
    true,
  );

  function say(st) {
    const url = st.dataset.say;
    if (!url || A.said.has(url)) return;
    A.said.add(url);
    // outside the stage: Gradio patches the stage's HTML on every update and would drop it
    let audio = document.querySelector("audio.rc-say");
    if (!audio) {
      audio = document.createElement("audio");
      audio.className = "rc-say";
      audio.hidden = true;
      document.body.appendChild(audio);
    }
    audio.src = url;
    timelineOf(audio, st); // fetched while the audio loads
    audio.play().catch(() => {}); // a browser that blocks it: the reply's player still plays
  }

  function pickFrame(st, shape, vowel, now) {
    const has = (f) => st.querySelector(`[data-frame="${f}"]`) !== null;
    if (shape !== "closed") {
      if (vowel && has(vowel)) return vowel;
      if (has(shape)) return shape;
      return has("open") ? "open" : has("half") ? "half" : "idle";
    }
    if (now < A.blinkUntil && has("blink")) return "blink";
    if (A.expression && now < A.expressionUntil && has(A.expression)) return A.expression;
    return has("closed") ? "closed" : "idle";
  }

  function showSprite(st, frame) {
    if (A.shown === frame && st.dataset.frame === frame) return;
    for (const img of st.querySelectorAll("img[data-frame]")) {
      img.classList.toggle("on", img.dataset.frame === frame);
    }
    st.dataset.frame = frame;
    A.shown = frame;
  }

  // the VRM renderer: its script once, one model at a time, the old one disposed when the
  // stage shows another model or a new canvas (Gradio patches the stage in place)
  function loadVrm(st) {
    if (A.vrmLoading) return;
    const url = st.dataset.model;
    const script = window.RolecastVRM
      ? Promise.resolve()
      : new Promise((resolve) => {
          const s = document.createElement("script");
          s.src = st.dataset.vrmScript;
          s.onload = resolve;
          s.onerror = () => {
            st.dataset.error = "the VRM renderer could not be loaded";
            resolve();
          };
          document.head.appendChild(s);
        });
    A.vrmLoading = script.then(() => {
      if (!window.RolecastVRM) return;
      return window.RolecastVRM.mount(st, url).then(
        (v) => {
          v.url = url;
          A.vrm = v;
        },
        (err) => (st.dataset.error = String(err)),
      );
    });
  }

  function dropVrm() {
    if (A.vrm && A.vrm.dispose) A.vrm.dispose();
    A.vrm = null;
    A.vrmLoading = null;
  }

  let last = performance.now();
  function tick(now) {
    try {
      frame(now);
    } finally {
      last = now;
      requestAnimationFrame(tick); // an error in one frame does not stop the avatar
    }
  }

  function frame(now) {
    const st = stage();
    if (A.vrm && (!st || st.dataset.kind !== "vrm" || A.vrm.url !== st.dataset.model
        || !st.contains(A.vrm.canvas))) {
      dropVrm(); // another character, or the stage was redrawn
    }
    if (st) {
      say(st);
      let shape = "closed",
        opening = 0,
        vowel = "",
        talking = false;
      const m = A.playing;
      if (m && !m.paused && !m.ended) {
        const t = timelineOf(m, st);
        if (t) {
          talking = true;
          const i = Math.floor(m.currentTime * t.fps);
          shape = t.shapes[i] || "closed";
          opening = t.open[i] || 0;
          vowel = (t.vowels && t.vowels[i]) || "";
          if (t.expression) {
            A.expression = t.expression;
            A.expressionUntil = now + 3000; // the face stays a moment after the words
          }
          if (A.samples.length < MAX_SAMPLES) A.samples.push([m.currentTime, shape]);
        }
      }
      if (talking) {
        A.talkTimes.push(now);
        if (A.talkTimes.length > 20000) A.talkTimes.splice(0, 10000);
      }
      if (now >= A.nextBlink) {
        A.blinkUntil = now + 140;
        A.nextBlink = now + 2000 + Math.random() * 4000;
      }
      st.dataset.mouth = shape;
      st.classList.toggle("talking", talking);
      if (st.dataset.kind === "vrm") {
        if (st.dataset.model && !A.vrm) loadVrm(st);
        if (A.vrm) {
          A.vrm.update((now - last) / 1000, {
            opening,
            vowel,
            blink: now < A.blinkUntil ? 1 : 0,
            expression: now < A.expressionUntil ? A.expression : null,
          });
        }
      } else {
        showSprite(st, pickFrame(st, shape, vowel, now));
      }
    }
  }
  requestAnimationFrame(tick);

  // frames per second while talking: frames over the time between them (a pause of more
  // than a second is between two talks, not a slow frame)
  A.fps = () => {
    let frames = 0,
      ms = 0;
    for (let i = 1; i < A.talkTimes.length; i++) {
      const d = A.talkTimes[i] - A.talkTimes[i - 1];
      if (d < 1000) (frames += 1), (ms += d);
    }
    return ms ? (frames * 1000) / ms : 0;
  };
})();
