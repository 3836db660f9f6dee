#NoTrayIcon
; kiosk-vm-watchdog: heartbeat. Every [heartbeat] interval_seconds:
;   GET <url>/api/v1/heartbeat?seq=N&status=ok
; N counts up from 1 in memory only: after a snapshot revert it is back at the snapshot's value,
; which the service expects. When the host hears nothing for its heartbeat_timeout, it reverts.
#include <Misc.au3>
#include "common.au3"

_KVW_Init("heartbeat")
If _Singleton("kiosk-vm-watchdog-heartbeat", 1) = 0 Then Exit 0 ; already running

Global $g_iIntervalMs = _KVW_ReadNumber("heartbeat", "interval_seconds", 1, 0.2, 60) * 1000
Global $g_sRequired = _KVW_Read("heartbeat", "require_processes", "")
Global $g_iSeq = 1
Global $g_sReachable = "unknown" ; logged on change only: a line a second would fill the disk
Global $g_sHeld = ""

_KVW_Log("started: " & $g_sKvwHostUrl & " every " & $g_iIntervalMs & " ms")
While 1
	Local $hTick = TimerInit()
	Local $sMissing = _KVW_MissingProcess($g_sRequired)
	If $sMissing <> "" Then
		; Withholding heartbeats makes the host revert the VM: everything starts afresh.
		If $g_sHeld <> $sMissing Then _KVW_Log($sMissing & " is not running: heartbeats withheld, the host will revert the VM")
		$g_sHeld = $sMissing
	Else
		If $g_sHeld <> "" Then _KVW_Log("required processes running again: heartbeats resume")
		$g_sHeld = ""
		If _KVW_Get("/api/v1/heartbeat?seq=" & $g_iSeq & "&status=ok") Then
			If $g_sReachable <> "yes" Then _KVW_Log("service answers (seq " & $g_iSeq & ")")
			$g_sReachable = "yes"
		Else
			If $g_sReachable <> "no" Then _KVW_Log("no answer from " & $g_sKvwHostUrl & " (seq " & $g_iSeq & ", error " & @error & "); retrying every beat")
			$g_sReachable = "no"
		EndIf
		$g_iSeq += 1
	EndIf
	Local $iLeft = $g_iIntervalMs - TimerDiff($hTick)
	If $iLeft > 0 Then Sleep($iLeft)
WEnd
