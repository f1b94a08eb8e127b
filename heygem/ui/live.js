// The Live tab's side in the browser (heygem.ui.studio): a live session of the studio's /api/live routes
// (heygem/live/routes.py), its picture and sound received over WebRTC into the tab's <video>, speech files and
// the microphone sent to it, and its figures read once a second.
//
// The words come from the tab's stage (data-live, filled by the studio in the page's language); each is a
// template whose {name} fields are filled here. The page's Gradio buttons call window.heygemLive.
(() => {
    const POLL_MS = 1000;
    const GATHER_MS = 3000;  // the studio takes no trickled candidates: the offer waits for them, this long at most
    const SAID_NOTE_MS = 1500;  // a note about a speech given is cleared once the presenter is resting again

    let config = null;       // {texts, params} of the stage
    let session = null;      // the running session's id
    let presenterName = '';
    let peer = null;         // RTCPeerConnection
    let micSender = null;    // the audio transceiver's sender: the microphone's track, or none
    let micStream = null;
    let micWanted = false;   // the "Use microphone" box, as last clicked
    let poll = null;
    let polling = false;
    let starting = null;     // the Start in progress (a Stop waits for it)
    let lastState = '';      // the session's state at the last look
    let noted = 0;           // when the note under the picture was written

    const byId = (id) => document.getElementById(id);

    function words() {
        if (!config) {
            const stage = byId('live-stage');
            if (!stage) return {texts: {}, params: {}};
            config = JSON.parse(stage.dataset.live);
        }
        return config;
    }

    // The template ``key`` with ``values``; null when a field it names has no value.
    function fill(template, values) {
        let missing = false;
        const filled = template.replace(/\{(\w+)\}/g, (_, field) => {
            if (values[field] === undefined || values[field] === null) { missing = true; return ''; }
            return String(values[field]);
        });
        return missing ? null : filled;
    }

    function say(key, values = {}) {
        const template = words().texts[key];
        if (template === undefined) return key;
        return fill(template, {...words().params, ...values}) ?? template;
    }

    // One line under the picture: a note, a note about a speech given (kind 'said'), or (kind 'error') what
    // went wrong.
    function note(message, kind = 'note') {
        const line = byId('live-message');
        if (!line) return;
        line.className = kind === 'error' ? 'hg-error' : 'hg-note';
        line.dataset.kind = message ? kind : '';
        line.textContent = message || '';
        noted = Date.now();
    }

    // Why a request failed, in the page's words: by the error's code when the studio sends one, else by the
    // status where a route answers it for one reason only, else the studio's own words.
    const STATUS_REASONS = {
        create: {404: 'live_no_presenter', 501: 'live_unavailable', 503: 'live_full'},
        session: {404: 'live_unknown'},
        say: {400: 'live_bad_audio', 404: 'live_unknown'},
    };

    function reason(answer, route, values = {}) {
        const body = answer.body || {};
        const texts = words().texts;
        const params = {...words().params, ...(body.params || {}), ...values};
        const state = texts['presenter_state_' + params.state];  // a presenter's state, in the page's words
        if (state) params.state = state;
        const code = body.code || (STATUS_REASONS[route] || {})[answer.status];
        const template = code && texts['reason_' + code];
        const worded = template && fill(template, params);
        if (worded) return worded;
        if (answer.status === 0) return say('live_unreachable');
        return say('live_request_failed', {status: answer.status, error: body.error || ''});
    }

    // A request to the studio: {ok, status, body}; status 0 when it could not be sent.
    async function request(method, path, payload) {
        const options = {method, headers: {}};
        if (payload instanceof FormData) {
            options.body = payload;
        } else if (payload !== undefined) {
            options.body = JSON.stringify(payload);
            options.headers['Content-Type'] = 'application/json';
        }
        try {
            const response = await fetch(path, options);
            let body = {};
            try { body = await response.json(); } catch (e) { /* an answer without JSON */ }
            return {ok: response.ok, status: response.status, body};
        } catch (e) {
            return {ok: false, status: 0, body: {}};
        }
    }

    function stage(attributes) {
        const element = byId('live-stage');
        if (element) Object.assign(element.dataset, attributes);
    }

    function showState(line, figures = '') {
        const state = byId('live-state');
        if (state) state.textContent = line;
        const shown = byId('live-figures');
        if (shown) shown.textContent = figures;
    }

    // "25.0 fps · 0 late · 0 dropped · latency 290 ms · A/V offset 4 ms · CPU 60% · 512×512" (the latency once
    // a speech has been answered).
    function figuresLine(f) {
        const parts = [say('live_fig_rate', {rate: Number(f.rate || 0).toFixed(1)}),
                       say('live_fig_late', {count: f.frames_late}),
                       say('live_fig_dropped', {count: f.frames_dropped})];
        if (f.latency_ms !== null && f.latency_ms !== undefined) {
            parts.push(say('live_fig_latency', {ms: Math.round(f.latency_ms)}));
        }
        parts.push(say('live_fig_offset', {ms: Math.round(f.av_offset_ms || 0)}),
                   say('live_fig_cpu', {percent: Math.round(f.cpu_percent || 0)}),
                   say('live_fig_size', {width: f.width, height: f.height}));
        if (f.degraded) parts.push(say('live_fig_degraded'));
        return parts.join(say('live_fig_separator'));
    }

    function stateLine(f) {
        const parts = [say('live_state_line', {name: f.presenter?.name || presenterName,
                                               state: say('live_state_' + f.state)})];
        if (f.frames_sent) parts.push(say('live_sent', {count: f.frames_sent}));
        if (f.speech_queued_seconds >= 0.05) {
            parts.push(say('live_queued', {seconds: Number(f.speech_queued_seconds).toFixed(1)}));
        }
        return parts.join(say('live_fig_separator'));
    }

    async function refresh() {
        if (!session || polling) return;
        polling = true;
        const id = session;
        try {
            const answer = await request('GET', `/api/live/${id}`);
            if (id !== session) return;
            if (answer.status === 404) {  // ended on the studio's side (peer gone, idle too long, studio stopped)
                note(reason(answer, 'session'), 'error');
                close('ended');
                return;
            }
            if (!answer.ok) return;  // a passing failure: the next look tries again
            const f = answer.body;
            lastState = f.state;
            stage({state: f.state, framesSent: f.frames_sent, utterances: f.utterances});
            showState(stateLine(f), figuresLine(f));
            const said = byId('live-message')?.dataset.kind === 'said';
            if (said && f.state === 'idle' && Date.now() - noted > SAID_NOTE_MS) {
                note('');  // said: the note would read as if it were still going on
            }
        } finally {
            polling = false;
        }
    }

    // Everything of the session in this page let go (the studio's session is ended by the caller).
    function close(state) {
        if (poll) clearInterval(poll);
        poll = null;
        session = null;
        lastState = '';
        micSender = null;
        if (peer) peer.close();
        peer = null;
        stopMicrophone();
        const video = byId('live-video');
        if (video) video.srcObject = null;
        stage({state, session: ''});
        showState(state === 'ended' ? say('live_ended') : say('live_idle'));
    }

    function stopMicrophone() {
        if (micStream) micStream.getTracks().forEach((track) => track.stop());
        micStream = null;
    }

    // The microphone's track, or null with the reason shown.
    async function openMicrophone() {
        if (!navigator.mediaDevices?.getUserMedia) {
            note(say('live_mic_insecure'), 'error');
            return null;
        }
        try {
            micStream = await navigator.mediaDevices.getUserMedia(
                {audio: {echoCancellation: true, noiseSuppression: true, autoGainControl: true}});
            return micStream.getAudioTracks()[0];
        } catch (e) {
            const key = e.name === 'NotAllowedError' || e.name === 'SecurityError' ? 'live_mic_denied'
                : e.name === 'NotFoundError' ? 'live_mic_missing' : 'live_mic_failed';
            note(say(key), 'error');
            return null;
        }
    }

    function play(video) {
        video.play().catch(() => {  // no sound without the person's gesture: the picture plays muted
            video.muted = true;
            video.play().catch(() => {});
            note(say('live_muted'));
            video.addEventListener('click', () => { video.muted = false; note(''); }, {once: true});
        });
    }

    function iceGathered(connection) {
        if (connection.iceGatheringState === 'complete') return Promise.resolve();
        return new Promise((resolve) => {
            const done = () => { if (connection.iceGatheringState === 'complete') resolve(); };
            connection.addEventListener('icegatheringstatechange', done);
            setTimeout(resolve, GATHER_MS);
        });
    }

    // The session's stream: picture and sound received; the sound's transceiver also sends, so the microphone
    // can be put on it (and taken off) later without another offer.
    async function connect(id) {
        const connection = new RTCPeerConnection();
        connection.addTransceiver('video', {direction: 'recvonly'});
        const sound = connection.addTransceiver('audio', {direction: 'sendrecv'});
        const video = byId('live-video');
        const received = new MediaStream();
        connection.addEventListener('track', (event) => {
            received.addTrack(event.track);
            if (video && video.srcObject !== received) {
                video.srcObject = received;
                play(video);
            }
        });
        connection.addEventListener('connectionstatechange', () => {
            if (connection.connectionState === 'failed' && connection === peer) {
                note(say('live_connection_failed'), 'error');
                end(false);
            }
        });
        await connection.setLocalDescription(await connection.createOffer());
        await iceGathered(connection);
        const offer = connection.localDescription;
        const answer = await request('POST', `/api/live/${id}/offer`, {sdp: offer.sdp, type: offer.type});
        if (!answer.ok) {
            connection.close();
            throw {worded: reason(answer, 'session')};
        }
        await connection.setRemoteDescription(answer.body);
        peer = connection;
        micSender = sound.sender;
    }

    // Start: the session running before (if any) ends, a new one of ``presenter`` is made and its stream
    // connected. A second click while one is starting is the same Start.
    function start(presenter, microphone) {
        if (!starting) starting = begin(presenter, microphone).finally(() => { starting = null; });
        return starting;
    }

    async function begin(presenter, microphone) {
        if (!presenter) { note(say('live_need_presenter'), 'error'); return; }
        if (typeof RTCPeerConnection === 'undefined') { note(say('live_no_webrtc'), 'error'); return; }
        micWanted = Boolean(microphone);
        await end(false);
        presenterName = byId('live-presenter')?.querySelector('input')?.value || '';
        note('');
        stage({state: 'starting'});
        showState(say('live_starting', {name: presenterName}));
        const created = await request('POST', '/api/live', {presenter});
        if (!created.ok) {
            note(reason(created, 'create'), 'error');
            stage({state: 'failed'});
            showState(say('live_idle'));
            return;
        }
        session = created.body.id;
        presenterName = created.body.presenter?.name || presenterName;
        stage({session, state: created.body.state});
        showState(say('live_connecting'));
        try {
            await connect(session);
        } catch (e) {
            note(e.worded || say('live_connection_failed'), 'error');
            await end(false);
            return;
        }
        poll = setInterval(refresh, POLL_MS);
        if (micWanted) await useMicrophone(true);  // (as the box is now: it may have been clicked meanwhile)
        refresh();
    }

    // Stop: waits for a Start under way, then ends the session.
    async function stop() {
        if (starting) await starting;
        await end(true);
    }

    async function end(said) {
        const id = session;
        if (!id && !peer) return;
        close('ended');
        if (id) await request('DELETE', `/api/live/${id}`);
        if (said) note(say('live_ended'));
    }

    async function speak(file, interrupt) {
        if (!session) { note(say('live_need_session'), 'error'); return; }
        if (!file || !file.url) { note(say('live_need_speech'), 'error'); return; }
        const name = file.orig_name || 'speech';
        let blob;
        try {
            blob = await (await fetch(file.url)).blob();  // the upload, from the page's own store of it
        } catch (e) {
            note(say('live_unreachable'), 'error');
            return;
        }
        const form = new FormData();
        form.append('audio', blob, name);
        form.append('interrupt', interrupt ? 'true' : 'false');
        const answer = await request('POST', `/api/live/${session}/say`, form);
        if (!answer.ok) { note(reason(answer, 'say', {file: name}), 'error'); return; }
        const seconds = Number(answer.body.seconds).toFixed(1);
        const key = interrupt ? (lastState === 'speaking' ? 'live_saying_instead' : 'live_saying')
            : answer.body.queued_seconds > answer.body.seconds + 0.2 ? 'live_saying_after' : 'live_saying';
        note(say(key, {file: name, seconds}), 'said');
        refresh();
    }

    async function hush() {
        if (!session) { note(say('live_need_session'), 'error'); return; }
        const answer = await request('POST', `/api/live/${session}/interrupt`);
        note(answer.ok ? say('live_hushed') : reason(answer, 'session'), answer.ok ? 'said' : 'error');
        refresh();
    }

    async function useMicrophone(on) {
        micWanted = on;
        if (!session || !micSender) {
            if (on) note(say('live_mic_next'));
            if (!on) stopMicrophone();
            return;
        }
        if (!on) {
            await micSender.replaceTrack(null);
            stopMicrophone();
            note(say('live_mic_off'));
            return;
        }
        const track = await openMicrophone();
        if (!track) return;
        if (!micSender) { stopMicrophone(); return; }  // stopped meanwhile
        await micSender.replaceTrack(track);
        note(say('live_mic_on'));
    }

    // Leaving the page ends its session at once (otherwise the studio ends it when the stream goes away).
    window.addEventListener('pagehide', () => {
        if (session) fetch(`/api/live/${session}`, {method: 'DELETE', keepalive: true});
    });

    window.heygemLive = {start, stop, speak, hush, useMicrophone};
})();
